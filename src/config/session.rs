//! `[session]` and `[ingest]`: what a WebSocket session and a producer request may do; with
//! their checks.

use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError};

/// `[session]`: WebSocket session behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Interval of server WebSocket pings and the interval clients are told to ping at, ms.
    pub heartbeat_ms: u64,
    /// Silence after which a session is closed with 4008, ms; 0 means `heartbeat_ms * 2 + 5000`.
    pub heartbeat_timeout_ms: u64,
    /// Frames a session may have queued towards its socket before it is closed with 4002.
    pub outbound_queue: usize,
    /// Bytes of frames a session may have queued towards its socket (a frame always fits an
    /// empty queue); over it a live message closes the session with 4002.
    pub outbound_bytes: usize,
    /// Largest client frame accepted, bytes; bigger ones close the session with 1009.
    pub max_frame_bytes: usize,
    /// Most messages replayed on connect; more missed than this sends `history_truncated`.
    pub replay_limit: usize,
    /// Grace period for a close frame to get through to a slow client, ms.
    pub close_grace_ms: u64,
    /// Most sessions one user may hold on this node (429 `too_many_sessions` above).
    pub max_per_user: usize,
    /// How often the node compares its sessions' positions with the store (one batched
    /// read for all local users); a session behind reads what it missed, ms.
    pub position_check_ms: u64,
    /// How long a hub shard holds broadcast frames to send them together (one encoding,
    /// one push and one socket write per session for the batch), ms; 0 = one by one.
    pub broadcast_batch_ms: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            heartbeat_ms: 25_000,
            heartbeat_timeout_ms: 0,
            outbound_queue: 256,
            outbound_bytes: 1024 * 1024,
            max_frame_bytes: 16 * 1024,
            replay_limit: 1000,
            close_grace_ms: 1000,
            position_check_ms: 3000,
            broadcast_batch_ms: 20,
            max_per_user: 64,
        }
    }
}

impl SessionConfig {
    /// Server ping interval.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    /// Interval of the position check.
    pub fn position_check(&self) -> Duration {
        Duration::from_millis(self.position_check_ms)
    }

    /// How long broadcast frames wait for others to go out with.
    pub fn broadcast_batch(&self) -> Duration {
        Duration::from_millis(self.broadcast_batch_ms)
    }

    /// Grace period for a close frame to reach a slow client.
    pub fn close_grace(&self) -> Duration {
        Duration::from_millis(self.close_grace_ms)
    }

    /// Silence allowed before 4008: configured, or derived from the heartbeat.
    pub fn heartbeat_timeout(&self) -> Duration {
        if self.heartbeat_timeout_ms == 0 {
            Duration::from_millis(self.heartbeat_ms.saturating_mul(2).saturating_add(5000))
        } else {
            Duration::from_millis(self.heartbeat_timeout_ms)
        }
    }
}

/// `[ingest]`: producer REST API limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest request body, bytes (413 above).
    pub max_body_bytes: usize,
    /// Most recipients of one message.
    pub max_recipients: usize,
    /// Most messages in one batch request.
    pub max_batch: usize,
    /// TTL of a message without `ttl_s`, seconds.
    pub default_ttl_s: u64,
    /// Largest `ttl_s` accepted, seconds.
    pub max_ttl_s: u64,
    /// Payload bytes (plus ~160 per frame) times recipients one request may ask to store
    /// and push (413 `fanout_too_large` above); broadcasts count nothing.
    pub max_fanout_bytes: usize,
    /// Deepest nesting of arrays and objects in a payload (400 above).
    pub max_payload_depth: usize,
    /// Requests per second per API key (429 `rate_limited` above, with `Retry-After`);
    /// bursts of one second's worth. 0 = no limit.
    pub key_requests_per_s: u32,
    /// Messages per second per API key (a batch counts each message); 0 = no limit.
    pub key_messages_per_s: u32,
    /// Longest a request body may take to arrive, ms (408 `body_timeout` after).
    pub body_timeout_ms: u64,
    /// Deliveries waiting for the hub (a broadcast counts once per session) above which
    /// ingestion answers 429 `overloaded` instead of queueing without bound.
    pub max_hub_backlog: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_recipients: 10_000,
            max_batch: 1000,
            default_ttl_s: 7 * 86_400,
            max_ttl_s: 30 * 86_400,
            max_hub_backlog: 1_000_000,
            max_fanout_bytes: 64 * 1024 * 1024,
            max_payload_depth: 64,
            key_requests_per_s: 20_000,
            key_messages_per_s: 200_000,
            body_timeout_ms: 10_000,
        }
    }
}

impl SessionConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat_ms == 0 {
            return Err(invalid("session.heartbeat_ms", "must be > 0"));
        }
        if self.heartbeat_timeout_ms != 0 && self.heartbeat_timeout_ms <= self.heartbeat_ms {
            return Err(invalid(
                "session.heartbeat_timeout_ms",
                "must be greater than session.heartbeat_ms",
            ));
        }
        if self.outbound_queue == 0 {
            return Err(invalid("session.outbound_queue", "must be > 0"));
        }
        if self.outbound_bytes < 16 * 1024 {
            return Err(invalid("session.outbound_bytes", "must be at least 16384"));
        }
        if self.max_frame_bytes < 256 {
            return Err(invalid("session.max_frame_bytes", "must be at least 256"));
        }
        if self.max_per_user == 0 {
            return Err(invalid("session.max_per_user", "must be > 0"));
        }
        if self.broadcast_batch_ms > 1000 {
            return Err(invalid(
                "session.broadcast_batch_ms",
                "must be at most 1000",
            ));
        }
        if self.position_check_ms < 100 {
            return Err(invalid("session.position_check_ms", "must be at least 100"));
        }
        if self.replay_limit == 0 {
            return Err(invalid("session.replay_limit", "must be > 0"));
        }
        Ok(())
    }
}

impl IngestConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes < 1024 {
            return Err(invalid("ingest.max_body_bytes", "must be at least 1024"));
        }
        if self.max_recipients == 0 {
            return Err(invalid("ingest.max_recipients", "must be > 0"));
        }
        if self.max_hub_backlog == 0 {
            return Err(invalid("ingest.max_hub_backlog", "must be > 0"));
        }
        if self.max_fanout_bytes < self.max_body_bytes {
            return Err(invalid(
                "ingest.max_fanout_bytes",
                "must be at least ingest.max_body_bytes",
            ));
        }
        if self.body_timeout_ms == 0 {
            return Err(invalid("ingest.body_timeout_ms", "must be > 0"));
        }
        if self.max_payload_depth == 0 {
            return Err(invalid("ingest.max_payload_depth", "must be > 0"));
        }
        if self.max_batch == 0 {
            return Err(invalid("ingest.max_batch", "must be > 0"));
        }
        if self.default_ttl_s == 0 || self.default_ttl_s > self.max_ttl_s {
            return Err(invalid(
                "ingest.default_ttl_s",
                "must be > 0 and <= ingest.max_ttl_s",
            ));
        }
        Ok(())
    }
}
