//! Latency and errors of each operation against a backend (Redis commands, store calls,
//! the auth endpoint),
//! labelled by a fixed list of operation names so label cardinality stays bounded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::histogram::Histogram;

/// One operation's latency and failures.
#[derive(Debug, Default)]
pub struct OpStats {
    pub latency: Histogram,
    pub errors: AtomicU64,
}

impl OpStats {
    /// Records a call that started at `start`; `ok` is false when it failed.
    pub fn observe(&self, start: Instant, ok: bool) {
        self.latency.record(start.elapsed());
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Operations by name; a name not in the list counts as its last entry (`other`).
#[derive(Debug)]
pub struct OpTable {
    names: &'static [&'static str],
    stats: Box<[OpStats]>,
}

impl OpTable {
    /// `names` must end with the catch-all name.
    pub fn new(names: &'static [&'static str]) -> Self {
        assert!(!names.is_empty(), "an op table needs a catch-all name");
        Self {
            names,
            stats: names.iter().map(|_| OpStats::default()).collect(),
        }
    }

    /// The readings of operation `name` (case-insensitive), or of the catch-all.
    pub fn op(&self, name: &[u8]) -> &OpStats {
        let i = self
            .names
            .iter()
            .position(|n| n.as_bytes().eq_ignore_ascii_case(name))
            .unwrap_or(self.names.len() - 1);
        &self.stats[i]
    }

    /// Every operation's name and readings.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &OpStats)> {
        self.names.iter().copied().zip(self.stats.iter())
    }
}

/// The Redis commands Herald sends (label `command`), `pipeline` for a pipelined batch.
pub const REDIS_OPS: &[&str] = &[
    "get",
    "mget",
    "set",
    "del",
    "hset",
    "hdel",
    "hgetall",
    "hkeys",
    "pexpire",
    "zadd",
    "zrem",
    "zrangebyscore",
    "ping",
    "info",
    "config",
    "subscribe",
    "pipeline",
    "other",
];

/// The message store's calls (label `op`).
pub const STORE_OPS: &[&str] = &[
    "append",
    "read",
    "last_seq",
    "last_seqs",
    "cursor",
    "save_cursors",
    "health",
    "locate",
    "device_cursors",
    "other",
];

/// Calls to the auth endpoint and fetches of the JWKS (label `op`).
pub const AUTH_OPS: &[&str] = &["verify_http", "jwks_fetch", "other"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_operations_count_under_the_catch_all_name() {
        let t = OpTable::new(REDIS_OPS);
        t.op(b"MGET").observe(Instant::now(), true);
        t.op(b"FLUSHALL").observe(Instant::now(), false);
        let mget = t.iter().find(|(n, _)| *n == "mget").unwrap().1;
        assert_eq!(mget.latency.snapshot().count(), 1);
        let other = t.iter().find(|(n, _)| *n == "other").unwrap().1;
        assert_eq!(other.errors.load(Ordering::Relaxed), 1);
    }
}
