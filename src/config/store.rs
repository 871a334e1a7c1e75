//! `[store]` and `[store.mongo]`: which message store backs the node and how it is bounded,
//! where MongoDB is and how it writes; with their checks.
//!
//! The write-concern conversion into the driver's type lives here too, because checking the
//! configured value is that conversion.

use std::time::Duration;

use mongodb::options::{Acknowledgment, WriteConcern};
use serde::Deserialize;

use super::{invalid, ConfigError};

/// Which message store backs the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// In-process, bounded, not durable across restarts.
    Memory,
    /// MongoDB (`[store.mongo]`): durable, shared by every node of a cluster.
    Mongo,
}

/// `[store]`: message store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    /// Messages kept per user, both backends (oldest dropped first).
    pub max_messages_per_user: usize,
    /// How long an idempotency key maps to its first message, seconds.
    pub idempotency_window_s: u64,
    /// Ack cursors are written in batches at most this often, ms.
    pub cursor_flush_ms: u64,
    /// Memory store: bytes of stored messages (frames plus ~64 bytes each) for all users
    /// together; past it the oldest stored messages go first.
    pub memory_max_bytes: usize,
    /// Memory store: idempotency keys remembered; past it the oldest are forgotten before
    /// their window ends.
    pub memory_max_keys: usize,
    /// MongoDB settings, used when `backend = "mongo"`; `max_messages_per_user` and
    /// `idempotency_window_s` above apply to it too.
    pub mongo: MongoStoreConfig,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Memory,
            max_messages_per_user: 1000,
            idempotency_window_s: 86_400,
            cursor_flush_ms: 200,
            memory_max_bytes: 256 * 1024 * 1024,
            memory_max_keys: 1_000_000,
            mongo: Default::default(),
        }
    }
}

impl StoreConfig {
    /// The MongoDB settings with the backend-independent limits of `[store]` applied.
    pub fn mongo_config(&self) -> MongoStoreConfig {
        let mut m = self.mongo.clone();
        m.max_messages_per_user = self.max_messages_per_user;
        m.idempotency_window_s = self.idempotency_window_s;
        m
    }
}

impl StoreConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_messages_per_user == 0 {
            return Err(invalid("store.max_messages_per_user", "must be > 0"));
        }
        if self.cursor_flush_ms == 0 {
            return Err(invalid("store.cursor_flush_ms", "must be > 0"));
        }
        if self.memory_max_bytes < 1024 * 1024 {
            return Err(invalid(
                "store.memory_max_bytes",
                "must be at least 1048576",
            ));
        }
        if self.memory_max_keys == 0 {
            return Err(invalid("store.memory_max_keys", "must be > 0"));
        }
        if self.backend == StoreBackend::Mongo {
            self.mongo_config()
                .validate()
                .map_err(|(key, reason)| invalid(key, reason))?;
        }
        Ok(())
    }
}

/// `[store.mongo]`: where the MongoDB store connects and how it writes.
///
/// Every field has a default, so `[store.mongo]` may be left out. Options inside `url`
/// (`replicaSet`, credentials, `tls`, `maxPoolSize`, `serverSelectionTimeoutMS`, …) are
/// honoured; `write_concern` here always wins over a `w=` in the URL, and the timeouts and
/// pool size below only fill in what the URL leaves unset.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MongoStoreConfig {
    /// Connection string, `mongodb://…` or `mongodb+srv://…`. Default `mongodb://127.0.0.1:27017`.
    pub url: String,
    /// Database holding Herald's collections. Default `herald`.
    pub database: String,
    /// What every write waits for before a 202: `"majority"` (default), a node count such as
    /// `"1"`, or the name of a custom write concern (tag set).
    pub write_concern: String,
    /// Messages kept per user: not a key of `[store.mongo]` but `store.max_messages_per_user`,
    /// filled in by [`StoreConfig::mongo_config`]. Older ones are never read again and are
    /// deleted in the background.
    #[serde(skip)]
    pub max_messages_per_user: usize,
    /// How long an idempotency key maps to its first message, seconds: likewise
    /// `store.idempotency_window_s`.
    #[serde(skip)]
    pub idempotency_window_s: u64,
    /// Budget of one MongoDB call including its retries, ms (default 2000). Also the server
    /// selection and connect timeout, so an unreachable server fails a call within it. A whole
    /// `append` may take up to [`APPEND_BUDGET_CALLS`] times this, and reads wait that long
    /// for a missing seq that may still be stored, so every node should use the same value.
    pub op_timeout_ms: u64,
    /// Most pooled connections per server (default 32): appends, replays, cursor writes and
    /// the position check share them (seqs are reserved in one round trip per batch; only
    /// the rare fallback increments users one by one, up to 16 at once).
    pub max_pool_size: u32,
}

/// A whole `append` (several sequential calls) may take this many `op_timeout_ms`.
pub const APPEND_BUDGET_CALLS: u32 = 5;

impl Default for MongoStoreConfig {
    fn default() -> Self {
        Self {
            url: "mongodb://127.0.0.1:27017".into(),
            database: "herald".into(),
            write_concern: "majority".into(),
            max_messages_per_user: 1000,
            idempotency_window_s: 86_400,
            op_timeout_ms: 2000,
            max_pool_size: 32,
        }
    }
}

/// Characters MongoDB refuses in a database name.
const DB_NAME_FORBIDDEN: &[char] = &['/', '\\', '.', ' ', '"', '$', '*', '<', '>', ':', '|', '?'];

impl MongoStoreConfig {
    /// Checks values that parse but cannot work; the error names the key (under `store.mongo`).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(self.url.starts_with("mongodb://") || self.url.starts_with("mongodb+srv://")) {
            return Err((
                "store.mongo.url",
                "must start with mongodb:// or mongodb+srv://".into(),
            ));
        }
        if self.database.is_empty()
            || self.database.len() > 63
            || self.database.contains(DB_NAME_FORBIDDEN)
        {
            return Err((
                "store.mongo.database",
                "must be 1-63 characters without / \\ . space \" $ * < > : | ?".into(),
            ));
        }
        self.write_concern()?;
        if self.max_messages_per_user == 0 {
            return Err(("store.max_messages_per_user", "must be > 0".into()));
        }
        if self.idempotency_window_s == 0 {
            return Err(("store.idempotency_window_s", "must be > 0".into()));
        }
        if !(50..=600_000).contains(&self.op_timeout_ms) {
            return Err(("store.mongo.op_timeout_ms", "must be 50-600000 (ms)".into()));
        }
        if self.max_pool_size == 0 {
            return Err(("store.mongo.max_pool_size", "must be > 0".into()));
        }
        Ok(())
    }

    /// Budget of one MongoDB call.
    pub fn op_timeout(&self) -> Duration {
        Duration::from_millis(self.op_timeout_ms)
    }

    /// The configured write concern; the server gives up waiting for it after `op_timeout`.
    pub fn write_concern(&self) -> Result<WriteConcern, (&'static str, String)> {
        let w = match self.write_concern.trim() {
            "" => {
                return Err((
                    "store.mongo.write_concern",
                    "must be \"majority\", a node count or a custom write concern name".into(),
                ))
            }
            "majority" => Acknowledgment::Majority,
            n if n.bytes().all(|b| b.is_ascii_digit()) => match n.parse::<u32>() {
                Ok(0) | Err(_) => return Err((
                    "store.mongo.write_concern",
                    "a node count must be 1 or more (unacknowledged writes could lose messages)"
                        .into(),
                )),
                Ok(n) => Acknowledgment::Nodes(n),
            },
            tag => Acknowledgment::Custom(tag.to_string()),
        };
        Ok(WriteConcern::builder()
            .w(w)
            .w_timeout(self.op_timeout())
            .build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_parse_from_an_empty_table() {
        let cfg: MongoStoreConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, MongoStoreConfig::default());
        cfg.validate().unwrap();
        assert_eq!(
            cfg.write_concern().unwrap().w,
            Some(Acknowledgment::Majority)
        );
    }

    #[test]
    fn write_concern_accepts_majority_counts_and_tags_but_not_zero() {
        let wc = |s: &str| {
            MongoStoreConfig {
                write_concern: s.into(),
                ..Default::default()
            }
            .write_concern()
        };
        assert_eq!(wc("1").unwrap().w, Some(Acknowledgment::Nodes(1)));
        assert_eq!(
            wc("dc2").unwrap().w,
            Some(Acknowledgment::Custom("dc2".into()))
        );
        assert_eq!(wc("0").unwrap_err().0, "store.mongo.write_concern");
        assert_eq!(wc("").unwrap_err().0, "store.mongo.write_concern");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_naming_the_key() {
        assert!(toml::from_str::<MongoStoreConfig>("uri = \"x\"").is_err());
        // The per-user limit and idempotency window are [store] keys, not [store.mongo] ones.
        assert!(toml::from_str::<MongoStoreConfig>("max_messages_per_user = 5").is_err());
        assert!(toml::from_str::<MongoStoreConfig>("idempotency_window_s = 5").is_err());
        let bad = MongoStoreConfig {
            database: "a.b".into(),
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "store.mongo.database");
        let bad = MongoStoreConfig {
            url: "http://x".into(),
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "store.mongo.url");
    }
}
