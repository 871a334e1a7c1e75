//! The node's counters: relaxed atomics bumped on the hot path by every layer, and the one
//! table of their names ([`READINGS`]) from which `/api/v1/stats` (JSON) and `/metrics`
//! (Prometheus text) are both built. No imports from the rest of the crate, so any module
//! may count into it.

mod export;
mod process;
mod readings;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

use self::export::Exporter;
pub use self::process::ProcessReadings;
pub use self::readings::{Kind, Reading, READINGS};

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
