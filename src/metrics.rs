//! The node's counters: relaxed atomics bumped on the hot path by every layer, and the one
//! table of their names ([`READINGS`]) from which `/api/v1/stats` (JSON) and `/metrics`
//! (Prometheus text) are both built. No imports from the rest of the crate, so any module
//! may count into it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use prometheus_client::registry::Unit;

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

/// Whether a reading only grows (a counter) or goes up and down (a gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One reading of [`Counters`]: its name (as `/api/v1/stats` shows it; `/metrics` shows
/// `herald_<name>`, counters with `_total`), kind and help text.
pub struct Reading {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub of: fn(&Counters) -> &AtomicU64,
}

/// Every reading, in one place: both `/api/v1/stats` and `/metrics` are built from it.
pub const READINGS: &[Reading] = &[
    Reading {
        name: "delivered",
        kind: Kind::Counter,
        help: "Frames handed to session sockets (messages and broadcasts).",
        of: |c| &c.delivered,
    },
    Reading {
        name: "accepted",
        kind: Kind::Counter,
        help: "Messages accepted by ingestion (2xx).",
        of: |c| &c.accepted,
    },
    Reading {
        name: "duplicates",
        kind: Kind::Counter,
        help: "Idempotent retries answered with the first id.",
        of: |c| &c.duplicates,
    },
    Reading {
        name: "slow_consumers",
        kind: Kind::Counter,
        help: "Sessions closed with 4002.",
        of: |c| &c.slow_consumers,
    },
    Reading {
        name: "heartbeat_timeouts",
        kind: Kind::Counter,
        help: "Sessions closed with 4008.",
        of: |c| &c.heartbeat_timeouts,
    },
    Reading {
        name: "sessions_opened",
        kind: Kind::Counter,
        help: "Sessions opened since start.",
        of: |c| &c.sessions_opened,
    },
    Reading {
        name: "sessions_live",
        kind: Kind::Gauge,
        help: "Sessions alive now (opened minus stopped).",
        of: |c| &c.sessions_live,
    },
    Reading {
        name: "sessions_refused",
        kind: Kind::Counter,
        help: "Connections refused because the node was at `server.max_sessions`.",
        of: |c| &c.sessions_refused,
    },
    Reading {
        name: "replayed",
        kind: Kind::Counter,
        help: "Messages replayed from the store on connect or gap fill.",
        of: |c| &c.replayed,
    },
    Reading {
        name: "skipped",
        kind: Kind::Counter,
        help: "Seqs sessions moved past without sending, on store evidence that they will never be stored (expired, or an append that gave up).",
        of: |c| &c.skipped,
    },
    Reading {
        name: "truncated",
        kind: Kind::Counter,
        help: "Seqs sessions moved past with a `history_truncated` frame (replay limit, retention).",
        of: |c| &c.truncated,
    },
    Reading {
        name: "forwarded",
        kind: Kind::Counter,
        help: "Envelopes a peer node acknowledged.",
        of: |c| &c.forwarded,
    },
    Reading {
        name: "forward_failures",
        kind: Kind::Counter,
        help: "Envelopes dropped after failed forwards or a full peer queue.",
        of: |c| &c.forward_failures,
    },
    Reading {
        name: "route_errors",
        kind: Kind::Counter,
        help: "Route-table calls that failed (Redis down or slow).",
        of: |c| &c.route_errors,
    },
    Reading {
        name: "hub_backlog",
        kind: Kind::Gauge,
        help: "Deliveries handed to the hub and not yet fanned out (a broadcast counts once per session): ingestion answers 429 above `ingest.max_hub_backlog`.",
        of: |c| &c.hub_backlog,
    },
    Reading {
        name: "connects_rate_limited",
        kind: Kind::Counter,
        help: "WebSocket upgrades refused with 429 `connect_rate_limited` (per client address).",
        of: |c| &c.connects_rate_limited,
    },
    Reading {
        name: "sessions_refused_per_user",
        kind: Kind::Counter,
        help: "WebSocket upgrades refused with 429 `too_many_sessions` (per user).",
        of: |c| &c.sessions_refused_per_user,
    },
    Reading {
        name: "requests_rate_limited",
        kind: Kind::Counter,
        help: "Producer requests refused with 429 `rate_limited` (per API key).",
        of: |c| &c.requests_rate_limited,
    },
    Reading {
        name: "fanout_refused",
        kind: Kind::Counter,
        help: "Messages refused with 413 `fanout_too_large` (payload x recipients over budget).",
        of: |c| &c.fanout_refused,
    },
    Reading {
        name: "payload_too_deep",
        kind: Kind::Counter,
        help: "Messages refused with 400 `payload_too_deep`.",
        of: |c| &c.payload_too_deep,
    },
    Reading {
        name: "body_timeouts",
        kind: Kind::Counter,
        help: "Producer requests whose body did not arrive within `ingest.body_timeout_ms` (408).",
        of: |c| &c.body_timeouts,
    },
    Reading {
        name: "overloaded",
        kind: Kind::Counter,
        help: "Requests refused with 429 because of the hub backlog.",
        of: |c| &c.overloaded,
    },
    Reading {
        name: "position_catchups",
        kind: Kind::Counter,
        help: "Sessions the periodic position check found behind the store and made read what they missed: live pushes that were lost (or, rarely, still on their way).",
        of: |c| &c.position_catchups,
    },
    Reading {
        name: "peers_resolved",
        kind: Kind::Counter,
        help: "Nodes a binding named before this node's live-peer view knew them, found alive by a lookup and forwarded to.",
        of: |c| &c.peers_resolved,
    },
    Reading {
        name: "position_check_errors",
        kind: Kind::Counter,
        help: "Position checks whose store read failed.",
        of: |c| &c.position_check_errors,
    },
    Reading {
        name: "internal_refused",
        kind: Kind::Counter,
        help: "Requests to the internal listener's `/internal/v1/deliver` refused (bad or replayed signature, body too large or too slow, unreadable body, sender mismatch).",
        of: |c| &c.internal_refused,
    },
];

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

/// The process as the kernel sees it: resident memory (bytes), CPU time (seconds, user +
/// system) and open file descriptors; `None` where `/proc` cannot say (not Linux).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct ProcessReadings {
    pub resident_memory_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<u64>,
}

/// Clock ticks per second of `/proc/<pid>/stat` times: USER_HZ, which Linux fixes at 100 in
/// its ABI on every architecture Herald builds for.
const USER_HZ: f64 = 100.0;

impl ProcessReadings {
    /// Reads `/proc/self` now.
    pub fn now() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").ok();
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        Self {
            resident_memory_bytes: status.as_deref().and_then(rss_bytes),
            cpu_seconds: stat.as_deref().and_then(cpu_seconds),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as u64),
        }
    }
}

/// `VmRSS` of a `/proc/<pid>/status` text, in bytes.
fn rss_bytes(status: &str) -> Option<u64> {
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// utime + stime of a `/proc/<pid>/stat` text, in seconds. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted after its last `)`.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After `)`: field 3 is the state; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// Reads [`Counters`] at each scrape.
#[derive(Debug)]
struct Exporter(Arc<Counters>);

impl Collector for Exporter {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for r in READINGS {
            let v = Counters::get((r.of)(&self.0));
            match r.kind {
                Kind::Counter => {
                    let m = ConstCounter::new(v);
                    m.encode(encoder.encode_descriptor(r.name, r.help, None, m.metric_type())?)?;
                }
                Kind::Gauge => {
                    let m = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
                    m.encode(encoder.encode_descriptor(r.name, r.help, None, m.metric_type())?)?;
                }
            }
        }
        let p = ProcessReadings::now();
        if let Some(v) = p.resident_memory_bytes {
            let m = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
            let help = "Resident memory of the node process, bytes.";
            let d = encoder.encode_descriptor(
                "process_resident_memory",
                help,
                Some(&Unit::Bytes),
                m.metric_type(),
            )?;
            m.encode(d)?;
        }
        if let Some(v) = p.cpu_seconds {
            let m = ConstCounter::new(v);
            let help = "CPU time of the node process, user + system, seconds.";
            let d = encoder.encode_descriptor(
                "process_cpu",
                help,
                Some(&Unit::Seconds),
                m.metric_type(),
            )?;
            m.encode(d)?;
        }
        if let Some(v) = p.open_fds {
            let m = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
            let help = "Open file descriptors of the node process (sockets included).";
            let d = encoder.encode_descriptor("process_open_fds", help, None, m.metric_type())?;
            m.encode(d)?;
        }
        Ok(())
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
    fn process_readings_parse_proc_status_and_stat() {
        assert_eq!(
            rss_bytes("Name:\tx\nVmRSS:\t  2048 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(rss_bytes("Name:\tx\n"), None);
        let stat = "42 (a b) c) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 1";
        assert_eq!(cpu_seconds(stat), Some(2.0));
        let now = ProcessReadings::now();
        assert!(now.resident_memory_bytes.unwrap() > 0);
        assert!(now.open_fds.unwrap() > 0);
        assert!(now.cpu_seconds.is_some());
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
