//! Readings that belong to many things at once: each session's outbound queue (for the
//! dashboard's ten deepest), each peer's forward queue and latency, and how many users hold
//! how many sessions. Registration takes a lock (on connect, on a peer's start); the hot path
//! only stores into the entry's atomics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use super::histogram::Histogram;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One session's outbound queue, as its writer keeps it.
#[derive(Debug)]
pub struct QueueGauge {
    user: Arc<str>,
    device: Arc<str>,
    opened_ms: u64,
    frames: AtomicU64,
    bytes: AtomicU64,
    /// Unix ms since the queue has been non-empty (0: empty).
    backlog_since_ms: AtomicU64,
    /// Pushes offered to the session's mailbox and not yet handled.
    mailbox: AtomicU64,
}

impl QueueGauge {
    /// A push went into the session's mailbox.
    pub fn offered(&self) {
        self.mailbox.fetch_add(1, Ordering::Relaxed);
    }

    /// The session took a push out of its mailbox.
    pub fn taken(&self) {
        self.mailbox.fetch_sub(1, Ordering::Relaxed);
    }

    /// The queue now holds `frames` frames of `bytes` bytes; `now_ms` is asked only when
    /// the queue stops being empty.
    pub fn set(&self, frames: usize, bytes: usize, now_ms: impl FnOnce() -> u64) {
        let was = self.frames.swap(frames as u64, Ordering::Relaxed);
        self.bytes.store(bytes as u64, Ordering::Relaxed);
        if frames == 0 {
            self.backlog_since_ms.store(0, Ordering::Relaxed);
        } else if was == 0 {
            self.backlog_since_ms.store(now_ms(), Ordering::Relaxed);
        }
    }
}

/// A session's row in the deepest-queues table.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct QueueRow {
    pub user: String,
    pub device: String,
    pub frames: u64,
    pub bytes: u64,
    /// How long the queue has been non-empty, ms.
    pub backlog_ms: u64,
    /// How long the session has been open, ms.
    pub connected_ms: u64,
}

/// Every live session's queue gauge, by session id.
#[derive(Debug, Default)]
pub struct SessionBoard {
    entries: Mutex<HashMap<u64, Arc<QueueGauge>>>,
}

impl SessionBoard {
    pub fn register(
        &self,
        session: u64,
        user: Arc<str>,
        device: Arc<str>,
        now_ms: u64,
    ) -> Arc<QueueGauge> {
        let g = Arc::new(QueueGauge {
            user,
            device,
            opened_ms: now_ms,
            frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            backlog_since_ms: AtomicU64::new(0),
            mailbox: AtomicU64::new(0),
        });
        lock(&self.entries).insert(session, g.clone());
        g
    }

    pub fn unregister(&self, session: u64) {
        lock(&self.entries).remove(&session);
    }

    /// Pushes waiting in every session's mailbox.
    pub fn mailboxes(&self) -> u64 {
        lock(&self.entries)
            .values()
            .map(|g| g.mailbox.load(Ordering::Relaxed))
            .sum()
    }

    /// The `n` sessions with the most queued frames (non-empty queues only), deepest first.
    pub fn deepest(&self, n: usize, now_ms: u64) -> Vec<QueueRow> {
        let mut found: Vec<(u64, Arc<QueueGauge>)> = lock(&self.entries)
            .values()
            .filter_map(|g| {
                let f = g.frames.load(Ordering::Relaxed);
                (f > 0).then(|| (f, g.clone()))
            })
            .collect();
        found.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
        found.truncate(n);
        found
            .into_iter()
            .map(|(frames, g)| {
                let since = g.backlog_since_ms.load(Ordering::Relaxed);
                QueueRow {
                    user: g.user.to_string(),
                    device: g.device.to_string(),
                    frames,
                    bytes: g.bytes.load(Ordering::Relaxed),
                    backlog_ms: if since == 0 {
                        0
                    } else {
                        now_ms.saturating_sub(since)
                    },
                    connected_ms: now_ms.saturating_sub(g.opened_ms),
                }
            })
            .collect()
    }
}

/// One peer node's forwarding readings.
#[derive(Debug, Default)]
pub struct PeerStats {
    /// Envelopes waiting to be forwarded.
    pub queue: AtomicU64,
    /// Envelopes the peer acknowledged.
    pub forwarded: AtomicU64,
    /// Envelopes dropped (queue full or forwards failed).
    pub drops: AtomicU64,
    /// Round trip of one forward POST.
    pub latency: Histogram,
}

/// Peer readings by node id (bounded by the cluster's size).
#[derive(Debug, Default)]
pub struct PeerBoard {
    peers: Mutex<Vec<(Arc<str>, Arc<PeerStats>)>>,
}

impl PeerBoard {
    /// The readings of `node`, created on first use and kept while the peer is known.
    pub fn of(&self, node: &str) -> Arc<PeerStats> {
        let mut peers = lock(&self.peers);
        if let Some((_, s)) = peers.iter().find(|(n, _)| &**n == node) {
            return s.clone();
        }
        let s = Arc::new(PeerStats::default());
        peers.push((Arc::from(node), s.clone()));
        peers.sort_by(|a, b| a.0.cmp(&b.0));
        s
    }

    /// Forgets a peer that left the cluster.
    pub fn forget(&self, node: &str) {
        lock(&self.peers).retain(|(n, _)| &**n != node);
    }

    pub fn all(&self) -> Vec<(Arc<str>, Arc<PeerStats>)> {
        lock(&self.peers).clone()
    }
}

/// Upper bounds of the sessions-per-user buckets (the last is open).
pub const SESSIONS_PER_USER: [u64; 6] = [1, 2, 3, 4, 8, u64::MAX];

/// How many users hold how many sessions on this node: a gauge per bucket, moved by the hub
/// when a user's session count changes.
#[derive(Debug, Default)]
pub struct UsersBySessions {
    buckets: [AtomicU64; SESSIONS_PER_USER.len()],
}

fn per_user_bucket(sessions: usize) -> usize {
    SESSIONS_PER_USER
        .iter()
        .position(|&b| sessions as u64 <= b)
        .unwrap_or(SESSIONS_PER_USER.len() - 1)
}

impl UsersBySessions {
    /// A user went from `before` to `after` sessions (0 = none).
    pub fn moved(&self, before: usize, after: usize) {
        if before > 0 {
            self.buckets[per_user_bucket(before)].fetch_sub(1, Ordering::Relaxed);
        }
        if after > 0 {
            self.buckets[per_user_bucket(after)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (label, users) per bucket: `1`, `2`, `3`, `4`, `5-8`, `9+`.
    pub fn read(&self) -> Vec<(&'static str, u64)> {
        const LABELS: [&str; 6] = ["1", "2", "3", "4", "5-8", "9+"];
        LABELS
            .iter()
            .zip(self.buckets.iter())
            .map(|(l, b)| (*l, b.load(Ordering::Relaxed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deepest_lists_only_non_empty_queues_deepest_first_with_their_backlog_age() {
        let b = SessionBoard::default();
        let names = ["a", "b", "c"];
        let gauges: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, n)| b.register(i as u64, Arc::from(*n), Arc::from("d"), 1_000))
            .collect();
        gauges[0].set(5, 500, || 2_000);
        gauges[1].set(9, 900, || 3_000);
        gauges[1].set(7, 700, || 3_500); // still backlogged since 3 000
        let rows = b.deepest(10, 4_000);
        let users: Vec<&str> = rows.iter().map(|r| r.user.as_str()).collect();
        assert_eq!(users, ["b", "a"]);
        assert_eq!((rows[0].frames, rows[0].bytes), (7, 700));
        assert_eq!(rows[0].backlog_ms, 1_000);
        assert_eq!(rows[0].connected_ms, 3_000);
        gauges[1].set(0, 0, || 4_000);
        b.unregister(0);
        assert!(b.deepest(10, 5_000).is_empty());
    }

    #[test]
    fn users_move_between_session_count_buckets() {
        let u = UsersBySessions::default();
        u.moved(0, 1);
        u.moved(0, 1);
        u.moved(1, 2);
        for n in 2..9 {
            u.moved(n, n + 1);
        }
        let r = u.read();
        assert_eq!(r[0], ("1", 1));
        assert_eq!(r[5], ("9+", 1));
        u.moved(9, 0);
        assert_eq!(u.read().iter().map(|(_, n)| n).sum::<u64>(), 1);
    }

    #[test]
    fn a_peer_keeps_one_set_of_readings_until_forgotten() {
        let p = PeerBoard::default();
        p.of("n2").drops.fetch_add(1, Ordering::Relaxed);
        assert_eq!(p.of("n2").drops.load(Ordering::Relaxed), 1);
        p.forget("n2");
        assert_eq!(p.of("n2").drops.load(Ordering::Relaxed), 0);
    }
}
