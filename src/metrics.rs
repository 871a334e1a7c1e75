//! The node's counters: relaxed atomics bumped on the hot path by every layer and read by
//! `/api/v1/stats`. Plain data with no imports from the rest of the crate, so any module may
//! count into it.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters every part of the node bumps; cheap enough for the hot path.
#[derive(Debug, Default)]
pub struct Counters {
    /// Frames handed to session sockets (messages and broadcasts).
    pub delivered: AtomicU64,
    /// Messages accepted by ingestion (2xx).
    pub accepted: AtomicU64,
    /// Idempotent retries answered with the first id.
    pub duplicates: AtomicU64,
    /// Sessions closed with 4002.
    pub slow_consumers: AtomicU64,
    /// Sessions closed with 4008.
    pub heartbeat_timeouts: AtomicU64,
    /// Sessions opened since start.
    pub sessions_opened: AtomicU64,
    /// Sessions alive now (opened minus stopped).
    pub sessions_live: AtomicU64,
    /// Connections refused because the node was at `server.max_sessions`.
    pub sessions_refused: AtomicU64,
    /// Messages replayed from the store on connect or gap fill.
    pub replayed: AtomicU64,
    /// Seqs sessions moved past without sending, on store evidence that they will never be
    /// stored (expired, or an append that gave up).
    pub skipped: AtomicU64,
    /// Seqs sessions moved past with a `history_truncated` frame (replay limit, retention).
    pub truncated: AtomicU64,
    /// Envelopes a peer node acknowledged.
    pub forwarded: AtomicU64,
    /// Envelopes dropped after failed forwards or a full peer queue.
    pub forward_failures: AtomicU64,
    /// Route-table calls that failed (Redis down or slow).
    pub route_errors: AtomicU64,
    /// Deliveries handed to the hub and not yet fanned out (a broadcast counts once per
    /// session): ingestion answers 429 above `ingest.max_hub_backlog`.
    pub hub_backlog: AtomicU64,
    /// WebSocket upgrades refused with 429 `connect_rate_limited` (per client address).
    pub connects_rate_limited: AtomicU64,
    /// WebSocket upgrades refused with 429 `too_many_sessions` (per user).
    pub sessions_refused_per_user: AtomicU64,
    /// Producer requests refused with 429 `rate_limited` (per API key).
    pub requests_rate_limited: AtomicU64,
    /// Messages refused with 413 `fanout_too_large` (payload x recipients over budget).
    pub fanout_refused: AtomicU64,
    /// Messages refused with 400 `payload_too_deep`.
    pub payload_too_deep: AtomicU64,
    /// Producer requests whose body did not arrive within `ingest.body_timeout_ms` (408).
    pub body_timeouts: AtomicU64,
    /// Requests refused with 429 because of the hub backlog.
    pub overloaded: AtomicU64,
    /// Sessions the periodic position check found behind the store and made read what
    /// they missed: live pushes that were lost (or, rarely, still on their way).
    pub position_catchups: AtomicU64,
    /// Nodes a binding named before this node's live-peer view knew them, found alive by
    /// a lookup and forwarded to.
    pub peers_resolved: AtomicU64,
    /// Position checks whose store read failed.
    pub position_check_errors: AtomicU64,
    /// Requests to the internal listener's `/internal/v1/deliver` refused (bad or replayed
    /// signature, body too large or too slow, unreadable body, sender mismatch).
    pub internal_refused: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
