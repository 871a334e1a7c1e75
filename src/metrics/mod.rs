//! The node's readings: relaxed atomics bumped on the hot path by every layer. Plain
//! counters and gauges are named in one table ([`READINGS`]); per-actor-type readings,
//! pipeline stage latencies and backend operation latencies are keyed by fixed enums and
//! name lists (`actors.rs`, `ops.rs`), per-session and per-peer readings by registration
//! (`board.rs`). `/api/v1/stats` (JSON), `/metrics` (Prometheus text, `export.rs`) and the
//! dashboard's history (`history.rs`) are all built from [`Counters`]. No imports from the
//! rest of the crate, so any module may count into it.

mod actors;
mod board;
mod export;
mod histogram;
mod history;
mod ops;
mod process;
mod readings;
mod view;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

pub use self::actors::{ActorKind, ActorStats, Handling, Stage};
pub use self::board::{PeerStats, QueueGauge, QueueRow, SESSIONS_PER_USER};
use self::export::Exporter;
pub use self::histogram::{Histogram, Snapshot};
pub use self::history::{ActorRow, History, OpRow, PeerRow, Sample, Tick};
pub use self::ops::{OpStats, OpTable, AUTH_OPS, REDIS_OPS, STORE_OPS};
pub use self::process::ProcessReadings;
pub use self::readings::{Kind, Reading, READINGS};
pub use self::view::{Closes, NodeView, DEEPEST_QUEUES};

use self::board::{PeerBoard, SessionBoard, UsersBySessions};

/// Latency and errors of every Redis command, store call and auth call.
#[derive(Debug)]
pub struct BackendOps {
    pub redis: OpTable,
    pub store: OpTable,
    pub auth: OpTable,
}

impl Default for BackendOps {
    fn default() -> Self {
        Self {
            redis: OpTable::new(REDIS_OPS),
            store: OpTable::new(STORE_OPS),
            auth: OpTable::new(AUTH_OPS),
        }
    }
}

/// Unix time in µs: the clock stage latencies are measured on (a message's arrival time
/// travels with it to other nodes).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

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
    /// Connection tokens refused (401), in every auth mode.
    pub auth_refused: AtomicU64,
    /// Connects and refreshes answered 503 `auth_unavailable` (endpoint or key set down).
    pub auth_unavailable: AtomicU64,
    /// Tokens the auth endpoint had verified, answered from the cache.
    pub auth_cache_hits: AtomicU64,
    /// Verifications that waited for an identical one in flight instead of calling.
    pub auth_coalesced: AtomicU64,
    /// Auth endpoint calls failed at once by the open breaker.
    pub auth_breaker_rejected: AtomicU64,
    /// 1 while the auth endpoint's breaker is open.
    pub auth_breaker_open: AtomicU64,
    /// JWKS refreshes an unknown `kid` asked for that the rate limit refused.
    pub jwks_refresh_limited: AtomicU64,
    /// Per actor type, indexed by [`ActorKind`].
    pub actors: [ActorStats; ActorKind::ALL.len()],
    /// Per pipeline stage, indexed by [`Stage`].
    pub stages: [Histogram; Stage::ALL.len()],
    pub ops: BackendOps,
    /// Every session's outbound queue.
    pub queues: SessionBoard,
    pub peers: PeerBoard,
    pub users_by_sessions: UsersBySessions,
    /// `metrics.timing = false`: no handling-time or stage-latency observations (counts,
    /// queue depths and backend latencies stay).
    timing_off: AtomicBool,
    /// The last minutes, one sample a second (see [`Counters::sample`]).
    history: Mutex<History>,
}

impl Counters {
    /// Turns handling-time and stage-latency observations on or off.
    pub fn set_timing(&self, on: bool) {
        self.timing_off.store(!on, Ordering::Relaxed);
    }

    /// Keeps `seconds` of history for the dashboard.
    pub fn set_history(&self, seconds: usize) {
        self.history().set_cap(seconds);
    }

    /// The dashboard's history ring.
    pub fn history(&self) -> MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes this second's reading into the history (once a second, by the node).
    pub fn sample(&self, now_ms: u64) {
        let mut tick = Tick::read(self, now_ms);
        tick.process = ProcessReadings::now();
        self.history().push(tick);
    }

    pub fn timing(&self) -> bool {
        !self.timing_off.load(Ordering::Relaxed)
    }

    pub fn actor(&self, kind: ActorKind) -> &ActorStats {
        &self.actors[kind as usize]
    }

    /// Messages waiting for actors of `kind`: sent minus handled, and for sessions the sum
    /// of every session's mailbox (a stopped session's leftovers leave with it).
    pub fn queue_depth(&self, kind: ActorKind) -> u64 {
        match kind {
            ActorKind::Session => self.queues.mailboxes(),
            _ => self.actor(kind).queue_depth(),
        }
    }

    /// When a handling starts, for [`ActorStats::handled_since`] (`None` with timing off):
    /// for a handler that needs its actor mutably and so cannot hold a [`Handling`].
    pub fn handling_start(&self) -> Option<std::time::Instant> {
        self.timing().then(std::time::Instant::now)
    }

    /// Start of handling one message of `kind`: counted (and timed) when dropped.
    pub fn handling(&self, kind: ActorKind) -> Handling<'_> {
        Handling::new(self.actor(kind), self.timing())
    }

    /// A message that arrived at `arrived_us` (see [`now_us`]) reached `stage`.
    pub fn stage(&self, stage: Stage, arrived_us: u64) {
        if self.timing() {
            self.stages[stage as usize].record_us(now_us().saturating_sub(arrived_us));
        }
    }

    /// Every reading's name and value now.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        READINGS
            .iter()
            .map(|r| (r.name, Counters::get((r.of)(self))))
            .collect()
    }

    /// The readings in the Prometheus / OpenMetrics text format (`herald_` prefix, counters
    /// with `_total`), via the Prometheus project's own `prometheus-client` encoder.
    pub fn prometheus_text(self: &Arc<Self>) -> String {
        let mut registry = Registry::with_prefix("herald");
        registry.register_collector(Box::new(Exporter(self.clone())));
        let mut out = String::new();
        // unwrap: writing to a String cannot fail
        encode(&mut out, &registry).unwrap();
        out
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_field_has_exactly_one_reading_with_a_unique_name() {
        let c = Counters::default();
        let mut names: Vec<&str> = READINGS.iter().map(|r| r.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), READINGS.len());
        // Each reading points at its own field: bump one at a time and see only it move.
        for (i, r) in READINGS.iter().enumerate() {
            Counters::add((r.of)(&c), 1_000 + i as u64);
        }
        let snap = c.snapshot();
        for (i, (_, v)) in snap.iter().enumerate() {
            assert_eq!(*v, 1_000 + i as u64);
        }
    }

    #[test]
    fn prometheus_text_names_counters_with_total_and_gauges_without() {
        let c = Arc::new(Counters::default());
        Counters::add(&c.accepted, 3);
        Counters::add(&c.sessions_live, 2);
        let text = c.prometheus_text();
        assert!(text.contains("# TYPE herald_accepted counter"), "{text}");
        assert!(text.contains("herald_accepted_total 3"), "{text}");
        assert!(text.contains("# TYPE herald_sessions_live gauge"), "{text}");
        assert!(text.contains("herald_sessions_live 2"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(
            text.contains("herald_process_resident_memory_bytes "),
            "{text}"
        );
        assert!(text.contains("herald_process_cpu_seconds_total "), "{text}");
        assert!(text.contains("herald_process_open_fds "), "{text}");
    }
}
