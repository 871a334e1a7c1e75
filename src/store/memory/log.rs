//! The memory store's data and its bounds, as plain logic without locking or clocks:
//! per-user logs of frames, the message id index (`index.rs`), idempotency keys and device
//! cursors.
//!
//! Every bound is configuration:
//! - each user keeps its newest `max_per_user` messages;
//! - all users together keep at most `max_bytes` of frames and id index: past it the oldest
//!   stored messages, whoever they are for, go first (a global FIFO of `(user, seq)`,
//!   compacted when stale records outnumber the live ones);
//! - at most `max_keys` idempotency keys are remembered: past it the oldest are forgotten
//!   before their window ends;
//! - a user keeps at most [`MAX_DEVICE_CURSORS`] device cursors: past it the one furthest
//!   behind goes (that device then resumes from what is retained).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::index::IdIndex;
use crate::frames::{Frame, MessageParts};
use crate::ids::{DeviceId, Seq, UserId};
use crate::store::{Delivery, DeviceCursor, MessageCopy};

/// Device cursors kept per user.
pub const MAX_DEVICE_CURSORS: usize = 256;
/// Bytes a message copy costs beyond its frame (entry, FIFO record, deque slot), roughly.
const ENTRY_OVERHEAD: usize = 80;

pub struct Entry {
    /// The message's id, shared by its copies: what the index forgets the copy under.
    pub id: Arc<str>,
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

impl UserLog {
    /// The copy at `seq`, while it is in the log (entries have no holes, so its place is
    /// arithmetic).
    fn entry(&self, seq: Seq) -> Option<&Entry> {
        let front = self.entries.front()?.seq;
        let i = usize::try_from(seq.checked_sub(front)?).ok()?;
        self.entries.get(i)
    }
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
    /// Message id -> copies, for [`Logs::locate`]; its bytes count in `max_bytes`.
    index: IdIndex,
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
            index: IdIndex::default(),
        }
    }

    /// Bytes the stored messages and their id index cost.
    pub fn bytes(&self) -> usize {
        self.bytes + self.index.bytes()
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

    /// Gives each user the next seq and stores message `id`'s frame, within every bound.
    pub fn store_for_users(
        &mut self,
        users: &[UserId],
        id: &Arc<str>,
        parts: &MessageParts,
        expires_ms: u64,
    ) -> Vec<Delivery> {
        let mut deliveries = Vec::with_capacity(users.len());
        let mut copies = Vec::with_capacity(users.len());
        for user in users {
            let log = self.users.entry(user.clone()).or_default();
            log.last_seq += 1;
            let seq = log.last_seq;
            let frame = parts.frame(seq);
            let mut freed = 0;
            if log.entries.len() == self.limits.max_per_user {
                if let Some(old) = log.entries.pop_front() {
                    freed = cost(&old);
                    self.index.copy_gone(&old.id);
                }
            }
            let entry = Entry {
                id: id.clone(),
                seq,
                expires_ms,
                frame: frame.clone(),
            };
            self.bytes = self.bytes + cost(&entry) - freed;
            self.live += usize::from(freed == 0);
            log.entries.push_back(entry);
            self.fifo.push_back((user.clone(), seq));
            copies.push((user.clone(), seq));
            deliveries.push(Delivery {
                user: user.clone(),
                seq,
                frame,
            });
        }
        self.index.insert(id.clone(), copies);
        self.evict_to_budget();
        self.compact();
        deliveries
    }

    /// Drops the oldest stored messages until they and the index are within `max_bytes`.
    fn evict_to_budget(&mut self) {
        while self.bytes() > self.limits.max_bytes {
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
                    self.index.copy_gone(&e.id);
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

    /// Every copy message `id` was stored as while one is still in a log; a copy trimmed
    /// from its log, or past its expiry at `now`, reads as not stored.
    pub fn locate(&self, id: &str, now: u64) -> Vec<MessageCopy> {
        let Some(copies) = self.index.copies(id) else {
            return Vec::new();
        };
        copies
            .iter()
            .map(|(user, seq)| MessageCopy {
                user: user.clone(),
                seq: *seq,
                stored: self
                    .users
                    .get(user)
                    .and_then(|log| log.entry(*seq))
                    .is_some_and(|e| e.expires_ms > now),
            })
            .collect()
    }

    /// The cursors of every device of `users`.
    pub fn device_cursors(&self, users: &[UserId]) -> Vec<DeviceCursor> {
        users
            .iter()
            .filter_map(|user| Some((user, self.users.get(user)?)))
            .flat_map(|(user, log)| {
                log.cursors.iter().map(|(device, seq)| DeviceCursor {
                    user: user.clone(),
                    device: device.clone(),
                    acked_seq: *seq,
                })
            })
            .collect()
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
#[path = "log_tests.rs"]
mod tests;
