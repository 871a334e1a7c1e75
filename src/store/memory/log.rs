//! The memory store's data and its bounds, as plain logic without locking or clocks:
//! per-user logs of frames, idempotency keys and device cursors.
//!
//! Every bound is configuration:
//! - each user keeps its newest `max_per_user` messages;
//! - all users together keep at most `max_bytes` of frames: past it the oldest stored
//!   messages, whoever they are for, go first (a global FIFO of `(user, seq)`, compacted
//!   when stale records outnumber the live ones);
//! - at most `max_keys` idempotency keys are remembered: past it the oldest are forgotten
//!   before their window ends;
//! - a user keeps at most [`MAX_DEVICE_CURSORS`] device cursors: past it the one furthest
//!   behind goes (that device then resumes from what is retained).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::frames::{Frame, MessageParts};
use crate::ids::{DeviceId, Seq, UserId};
use crate::store::Delivery;

/// Device cursors kept per user.
pub const MAX_DEVICE_CURSORS: usize = 256;
/// Bytes a message costs beyond its frame (entry, FIFO record, deque slot), roughly.
const ENTRY_OVERHEAD: usize = 64;

pub struct Entry {
    pub seq: Seq,
    pub expires_ms: u64,
    pub frame: Frame,
}

#[derive(Default)]
pub struct UserLog {
    pub last_seq: Seq,
    pub entries: VecDeque<Entry>,
    pub cursors: HashMap<DeviceId, Seq>,
}

pub struct IdemEntry {
    pub id: Arc<str>,
    pub recipients: usize,
}

/// The bounds of [`Logs`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_per_user: usize,
    pub max_bytes: usize,
    pub max_keys: usize,
    pub idempotency_window_ms: u64,
}

/// Everything the memory store holds.
pub struct Logs {
    limits: Limits,
    pub users: HashMap<UserId, UserLog>,
    idempotency: HashMap<String, IdemEntry>,
    /// Insertion order of idempotency keys with their expiry, for purging.
    idempotency_order: VecDeque<(u64, String)>,
    /// Every stored message in storing order; records of messages already gone are stale.
    fifo: VecDeque<(UserId, Seq)>,
    /// Messages stored and not yet dropped.
    live: usize,
    /// Their cost: frame bytes plus [`ENTRY_OVERHEAD`] each.
    bytes: usize,
}

impl Logs {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            users: HashMap::new(),
            idempotency: HashMap::new(),
            idempotency_order: VecDeque::new(),
            fifo: VecDeque::new(),
            live: 0,
            bytes: 0,
        }
    }

    /// Bytes the stored messages cost.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What key `key` was first used for, if it is remembered.
    pub fn seen(&mut self, key: &str, now: u64) -> Option<&IdemEntry> {
        self.purge_idempotency(now);
        self.idempotency.get(key)
    }

    /// Remembers `key` for its window (or until `max_keys` newer ones push it out).
    pub fn remember(&mut self, key: String, entry: IdemEntry, now: u64) {
        let expires = now.saturating_add(self.limits.idempotency_window_ms);
        self.idempotency_order.push_back((expires, key.clone()));
        self.idempotency.insert(key, entry);
        while self.idempotency.len() > self.limits.max_keys {
            let Some((_, old)) = self.idempotency_order.pop_front() else {
                break;
            };
            self.idempotency.remove(&old);
        }
    }

    /// Forgets idempotency keys whose window ended.
    fn purge_idempotency(&mut self, now: u64) {
        while let Some((exp, _)) = self.idempotency_order.front() {
            if *exp > now {
                break;
            }
            if let Some((_, key)) = self.idempotency_order.pop_front() {
                self.idempotency.remove(&key);
            }
        }
    }

    /// Gives each user the next seq and stores its frame, within every bound.
    pub fn store_for_users(
        &mut self,
        users: &[UserId],
        parts: &MessageParts,
        expires_ms: u64,
    ) -> Vec<Delivery> {
        let mut deliveries = Vec::with_capacity(users.len());
        for user in users {
            let log = self.users.entry(user.clone()).or_default();
            log.last_seq += 1;
            let seq = log.last_seq;
            let frame = parts.frame(seq);
            let mut freed = 0;
            if log.entries.len() == self.limits.max_per_user {
                freed = log.entries.pop_front().map_or(0, |e| cost(&e));
            }
            let entry = Entry {
                seq,
                expires_ms,
                frame: frame.clone(),
            };
            self.bytes = self.bytes + cost(&entry) - freed;
            self.live += usize::from(freed == 0);
            log.entries.push_back(entry);
            self.fifo.push_back((user.clone(), seq));
            deliveries.push(Delivery {
                user: user.clone(),
                seq,
                frame,
            });
        }
        self.evict_to_budget();
        self.compact();
        deliveries
    }

    /// Drops the oldest stored messages until the bytes are within `max_bytes`.
    fn evict_to_budget(&mut self) {
        while self.bytes > self.limits.max_bytes {
            let Some((user, seq)) = self.fifo.pop_front() else {
                break;
            };
            let Some(log) = self.users.get_mut(&user) else {
                continue;
            };
            // Entries leave a log only from its front, so the record is live exactly when
            // it is the front entry.
            if log.entries.front().is_some_and(|e| e.seq == seq) {
                if let Some(e) = log.entries.pop_front() {
                    self.bytes -= cost(&e);
                    self.live -= 1;
                }
            }
        }
    }

    /// Rebuilds the FIFO without stale records once they outnumber the live ones.
    fn compact(&mut self) {
        if self.fifo.len() <= 2 * self.live + 1024 {
            return;
        }
        let users = &self.users;
        self.fifo.retain(|(user, seq)| {
            users
                .get(user)
                .and_then(|l| l.entries.front())
                .is_some_and(|front| front.seq <= *seq)
        });
    }

    /// Moves `device`'s cursor forward to `seq` (never past the user's newest seq).
    pub fn save_cursor(&mut self, user: UserId, device: DeviceId, seq: Seq) {
        let log = self.users.entry(user).or_default();
        let seq = seq.min(log.last_seq);
        if !log.cursors.contains_key(&device) && log.cursors.len() >= MAX_DEVICE_CURSORS {
            let furthest_behind = log
                .cursors
                .iter()
                .min_by_key(|(_, s)| **s)
                .map(|(d, _)| d.clone());
            if let Some(d) = furthest_behind {
                log.cursors.remove(&d);
            }
        }
        let c = log.cursors.entry(device).or_insert(0);
        *c = (*c).max(seq);
    }
}

fn cost(e: &Entry) -> usize {
    e.frame.len() + ENTRY_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logs(max_per_user: usize, max_bytes: usize, max_keys: usize) -> Logs {
        Logs::new(Limits {
            max_per_user,
            max_bytes,
            max_keys,
            idempotency_window_ms: 60_000,
        })
    }

    fn u(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn store(l: &mut Logs, users: &[&str], payload: &str) {
        let users: Vec<UserId> = users.iter().map(|s| u(s)).collect();
        let parts = MessageParts::new("id", None, payload, 0, 0);
        l.store_for_users(&users, &parts, u64::MAX);
    }

    fn seqs(l: &Logs, user: &str) -> Vec<Seq> {
        l.users[&u(user)].entries.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn past_the_byte_budget_the_oldest_messages_of_any_user_go_first() {
        let payload = format!("\"{}\"", "x".repeat(1000));
        let mut l = logs(100, 5_000, 10);
        store(&mut l, &["a"], &payload);
        store(&mut l, &["b"], &payload);
        store(&mut l, &["a", "b"], &payload);
        store(&mut l, &["c"], &payload);
        assert!(l.bytes() <= 5_000, "{}", l.bytes());
        // Five messages of ~1.1 KB each do not fit: the first (a:1) went.
        assert_eq!(seqs(&l, "a"), [2]);
        assert_eq!(seqs(&l, "b"), [1, 2]);
        assert_eq!(seqs(&l, "c"), [1]);
        assert_eq!(l.users[&u("a")].last_seq, 2, "seqs keep counting");
    }

    #[test]
    fn per_user_retention_frees_bytes_and_leaves_no_stale_record_behind_for_long() {
        let mut l = logs(2, usize::MAX, 10);
        for _ in 0..10_000 {
            store(&mut l, &["a"], "1");
        }
        assert_eq!(seqs(&l, "a"), [9_999, 10_000]);
        assert_eq!(l.live, 2);
        let kept: usize = l.users[&u("a")].entries.iter().map(cost).sum();
        assert_eq!(l.bytes(), kept);
        assert!(l.fifo.len() <= 2 * l.live + 1024, "{}", l.fifo.len());
    }

    #[test]
    fn past_max_keys_the_oldest_idempotency_keys_are_forgotten() {
        let mut l = logs(10, usize::MAX, 3);
        for k in 0..5 {
            let entry = IdemEntry {
                id: Arc::from(format!("m{k}")),
                recipients: 1,
            };
            l.remember(format!("k{k}"), entry, 0);
        }
        assert!(l.seen("k0", 1).is_none());
        assert!(l.seen("k1", 1).is_none());
        assert_eq!(&*l.seen("k4", 1).unwrap().id, "m4");
        assert!(l.seen("k4", 60_001).is_none(), "window over");
    }

    #[test]
    fn past_the_cursor_cap_the_device_furthest_behind_is_forgotten() {
        let mut l = logs(10, usize::MAX, 3);
        store(&mut l, &["a"], "1");
        for d in 0..MAX_DEVICE_CURSORS {
            let seq = if d == 7 { 0 } else { 1 };
            l.save_cursor(u("a"), DeviceId::parse(&format!("d{d}")).unwrap(), seq);
        }
        l.save_cursor(u("a"), DeviceId::parse("new").unwrap(), 1);
        let cursors = &l.users[&u("a")].cursors;
        assert_eq!(cursors.len(), MAX_DEVICE_CURSORS);
        assert!(!cursors.contains_key(&DeviceId::parse("d7").unwrap()));
        assert_eq!(cursors[&DeviceId::parse("new").unwrap()], 1);
    }
}
