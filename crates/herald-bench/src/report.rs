//! The final JSON report of `herald-bench run`: one object, one line, on stdout; field order is
//! the order of the phases.

use std::collections::BTreeMap;

use serde::Serialize;

use super::fleet::Worker;
use super::histogram::Histogram;
use super::protocol::{merge_reasons, Reasons};
use super::Mode;

/// Rounds to three decimals, so the report stays readable.
pub fn r3(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

/// `a / b`, or 0 when `b` is 0.
pub fn per(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        r3(a / b)
    } else {
        0.0
    }
}

/// Latency percentiles in milliseconds (microsecond resolution).
#[derive(Debug, Serialize, Default)]
pub struct LatencyMs {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl LatencyMs {
    pub fn from(h: &Histogram) -> Self {
        let ms = |us: Option<u64>| us.map_or(0.0, |v| r3(v as f64 / 1000.0));
        Self {
            count: h.count(),
            p50: ms(h.quantile(0.50)),
            p90: ms(h.quantile(0.90)),
            p99: ms(h.quantile(0.99)),
            p999: ms(h.quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean().map_or(0.0, |m| r3(m / 1000.0)),
        }
    }
}

/// Everything `herald-bench run` measured.
#[derive(Debug, Serialize, Default)]
pub struct Report {
    pub mode: Option<Mode>,
    pub targets: Vec<String>,
    pub run_id: u64,
    // connect
    pub conns: u64,
    pub workers: usize,
    pub connected: u64,
    pub connect_failed: u64,
    pub connect_errors: Reasons,
    pub connect_secs: f64,
    /// Connections per second over the connect phase.
    pub connect_rate: f64,
    /// Server CPU time over the connect phase, seconds (with --server-pid).
    pub server_cpu_connect_secs: Option<f64>,
    // memory
    pub idle_secs: u64,
    pub rss_before_bytes: Option<u64>,
    pub rss_after_bytes: Option<u64>,
    /// (after - before) / connected; may be negative if the server returned memory.
    pub rss_per_conn_bytes: Option<i64>,
    pub rss_per_conn_kb: Option<f64>,
    /// The bench workers' own resident memory per connection.
    pub client_rss_per_conn_kb: f64,
    // publish
    pub messages: u64,
    pub rate_offered: f64,
    pub batch_size: u64,
    pub publish_conns: usize,
    pub publish_secs: f64,
    /// Accepted messages per second over the publish phase.
    pub publish_rate: f64,
    pub accepted: u64,
    pub rejected: u64,
    pub publish_failed: u64,
    pub unsent: u64,
    /// Requests that went out more than 10 ms after they were due because every publishing
    /// connection awaited an answer (the node fell behind, or the pool was too small).
    pub late_requests: u64,
    pub http_status: BTreeMap<String, u64>,
    /// Refused requests by status and the node's error code (`429 rate_limited`: the
    /// node's per-key limit, `ingest.key_requests_per_s`, capped the run).
    pub refusals: Reasons,
    pub publish_errors: Reasons,
    // deliveries
    /// Sessions open when publishing started.
    pub open_at_publish: u64,
    pub expected: u64,
    pub received: u64,
    /// expected - received.
    pub loss: i64,
    pub loss_pct: f64,
    /// Frames of earlier runs (replays) or other producers, not counted.
    pub stale: u64,
    pub out_of_order: u64,
    /// How connections ended before the bench closed them.
    pub disconnects: Reasons,
    pub drain_secs: f64,
    /// received / (last receipt - first send).
    pub deliveries_per_sec: f64,
    pub latency_ms: LatencyMs,
    /// Send to the server's stored `ts` (ms resolution): the ingest share of the latency.
    pub stored_latency_ms: LatencyMs,
    /// TCP connect to the `101` answer, over every opened connection: the handshake time
    /// under `--connect-concurrency` handshakes in flight (SYN retries show as ~1 s).
    pub handshake_ms: LatencyMs,
    /// Scheduling delay of the workers' event loops after connecting; large values mean
    /// the bench itself was short of CPU and latency figures are inflated by it.
    pub worker_loop_lag_ms: LatencyMs,
    /// CPU time over publish + drain, seconds: the server (with --server-pid) and this
    /// process (the publisher); on a shared machine these show who had the cores.
    pub server_cpu_publish_secs: Option<f64>,
    pub publisher_cpu_secs: f64,
    /// Server CPU over publish + drain per accepted message, µs (with --server-pid).
    pub server_cpu_us_per_message: Option<f64>,
    /// Server CPU over publish + drain per delivery received, µs (with --server-pid).
    pub server_cpu_us_per_delivery: Option<f64>,
    /// Whether the offered rate was held: accepted/s at least 95 % of `rate_offered`,
    /// nothing refused or failed, nothing lost (absent when nothing was published).
    pub offered_rate_held: Option<bool>,
    /// CPU time of all workers over the whole run, seconds.
    pub worker_cpu_secs: f64,
    /// Delta of the servers' `/api/v1/stats` counters over the run (summed over targets).
    pub server_counters: Option<BTreeMap<String, i64>>,
    pub elapsed_secs: f64,
}

/// `after - before` for every counter present in both.
pub fn counter_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, i64> {
    after
        .iter()
        .filter_map(|(k, a)| before.get(k).map(|b| (k.clone(), *a as i64 - *b as i64)))
        .collect()
}

pub fn merge_summaries(report: &mut Report, workers: &[Worker], first_send_us: u64) {
    let mut latency = Histogram::new();
    let mut stored = Histogram::new();
    let mut lag = Histogram::new();
    let mut handshake = Histogram::new();
    let mut last_recv_us = 0;
    let mut client_rss = 0;
    for w in workers {
        let Some(s) = &w.summary else {
            // Crashed or killed: its last progress is all that is known.
            report.received += w.latest.received;
            continue;
        };
        report.received += s.progress.received;
        report.stale += s.stale;
        report.out_of_order += s.out_of_order;
        merge_reasons(&mut report.connect_errors, &s.connect_errors);
        merge_reasons(&mut report.disconnects, &s.disconnects);
        last_recv_us = last_recv_us.max(s.last_recv_us);
        client_rss += s.rss_bytes;
        report.worker_cpu_secs += s.cpu_secs;
        latency.merge(&s.latency);
        stored.merge(&s.stored_latency);
        lag.merge(&s.loop_lag);
        handshake.merge(&s.handshake);
    }
    // Includes the connections of a worker that never started or crashed.
    report.connect_failed = report.conns.saturating_sub(report.connected);
    report.client_rss_per_conn_kb = per(client_rss as f64 / 1024.0, report.connected as f64);
    report.loss = report.expected as i64 - report.received as i64;
    report.loss_pct = if report.expected > 0 {
        r3(100.0 * report.loss as f64 / report.expected as f64)
    } else {
        0.0
    };
    if first_send_us > 0 && last_recv_us > first_send_us {
        let secs = (last_recv_us - first_send_us) as f64 / 1e6;
        report.deliveries_per_sec = per(report.received as f64, secs);
    }
    report.latency_ms = LatencyMs::from(&latency);
    report.stored_latency_ms = LatencyMs::from(&stored);
    report.worker_loop_lag_ms = LatencyMs::from(&lag);
    report.handshake_ms = LatencyMs::from(&handshake);
    report.worker_cpu_secs = r3(report.worker_cpu_secs);
    if let Some(cpu) = report.server_cpu_publish_secs {
        let us = cpu * 1e6;
        report.server_cpu_us_per_message =
            (report.accepted > 0).then(|| per(us, report.accepted as f64));
        report.server_cpu_us_per_delivery =
            (report.received > 0).then(|| per(us, report.received as f64));
    }
    if report.messages > 0 && report.mode.is_some_and(|m| m != crate::Mode::None) {
        report.offered_rate_held = Some(
            report.publish_rate >= 0.95 * report.rate_offered
                && report.rejected == 0
                && report.publish_failed == 0
                && report.unsent == 0
                && report.loss <= 0,
        );
    }
}

/// Says on stderr why a run missed its offered rate: refusals by reason, requests that went
/// out late (the node or the publishing pool could not keep up), the node's per-key limit.
pub fn explain_missed_rate(report: &Report) {
    eprintln!(
        "bench: the offered rate was NOT held: {} msg/s offered, {} accepted/s, \
         {} refused, {} failed, {} unsent, {} lost",
        report.rate_offered,
        report.publish_rate,
        report.rejected,
        report.publish_failed,
        report.unsent,
        report.loss
    );
    for (reason, n) in &report.refusals {
        eprintln!("bench: {n} requests refused {reason}");
    }
    if report.late_requests > 0 {
        eprintln!(
            "bench: {} requests went out late, all {} publishing connections waiting \
             for answers: either the node could not keep up, or the pool was too small \
             for the request latency (rate <= connections / latency); if the node had \
             CPU to spare, raise --publish-conns",
            report.late_requests, report.publish_conns
        );
    }
    if report.refusals.keys().any(|r| r.ends_with(" rate_limited")) {
        eprintln!(
            "bench: the node's per-key limit capped this run; lift it to measure \
             capacity (HERALD_INGEST__KEY_REQUESTS_PER_S=0, \
             HERALD_INGEST__KEY_MESSAGES_PER_S=0)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_reported_in_milliseconds_from_microseconds() {
        let mut h = Histogram::new();
        for us in [1_000u64, 2_000, 3_000, 250_000] {
            h.record(us);
        }
        let l = LatencyMs::from(&h);
        assert_eq!(l.count, 4);
        assert!(l.p50 >= 2.0 && l.p50 <= 2.07, "{}", l.p50);
        assert_eq!(l.max, 250.0);
        assert_eq!(LatencyMs::from(&Histogram::new()).p99, 0.0);
    }

    #[test]
    fn rates_with_a_zero_denominator_are_zero() {
        assert_eq!(per(10.0, 0.0), 0.0);
        assert_eq!(per(10.0, 4.0), 2.5);
        assert_eq!(r3(f64::NAN), 0.0);
    }

    #[test]
    fn counter_delta_covers_keys_present_before_and_after() {
        let before = BTreeMap::from([("a".to_string(), 5u64), ("b".to_string(), 1)]);
        let after = BTreeMap::from([("a".to_string(), 9u64), ("c".to_string(), 3)]);
        assert_eq!(
            counter_delta(&before, &after),
            BTreeMap::from([("a".to_string(), 4)])
        );
    }
}
