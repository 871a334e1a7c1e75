//! The Prometheus side: a `prometheus-client` collector that reads [`Counters`] and the
//! process at each scrape. Label values come from fixed lists (actor types, stages, backend
//! operations, session-count buckets) or the cluster's node ids, never from users or
//! sessions.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::{
    ActorKind, ActorStats, Counters, Kind, PeerStats, ProcessReadings, Snapshot, Stage, READINGS,
};

/// Reads [`Counters`] at each scrape.
#[derive(Debug)]
pub(super) struct Exporter(pub(super) Arc<Counters>);

impl Collector for Exporter {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for r in READINGS {
            let v = Counters::get((r.of)(&self.0));
            match r.kind {
                Kind::Counter => counter(&mut encoder, r.name, r.help, None, v)?,
                Kind::Gauge => gauge(&mut encoder, r.name, r.help, None, v)?,
            }
        }
        let p = ProcessReadings::now();
        if let Some(v) = p.resident_memory_bytes {
            let help = "Resident memory of the node process, bytes.";
            gauge(
                &mut encoder,
                "process_resident_memory",
                help,
                Some(&Unit::Bytes),
                v,
            )?;
        }
        if let Some(v) = p.cpu_seconds {
            let help = "CPU time of the node process, user + system, seconds.";
            counter(&mut encoder, "process_cpu", help, Some(&Unit::Seconds), v)?;
        }
        if let Some(v) = p.open_fds {
            let help = "Open file descriptors of the node process (sockets included).";
            gauge(&mut encoder, "process_open_fds", help, None, v)?;
        }
        detail(&self.0, &mut encoder)
    }
}

/// One labelled family: rows of (label value, reading).
struct Family<'a, T> {
    name: &'a str,
    help: &'a str,
    label: &'a str,
    rows: Vec<(&'a str, T)>,
}

fn read(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn fam<'a, T>(
    name: &'a str,
    help: &'a str,
    label: &'a str,
    rows: Vec<(&'a str, T)>,
) -> Family<'a, T> {
    Family {
        name,
        help,
        label,
        rows,
    }
}

/// The per-actor, per-stage, per-operation, per-peer and per-bucket families.
fn detail(c: &Counters, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let actors = || ActorKind::ALL.iter().map(|k| (k.name(), c.actor(*k)));
    let a = |f: fn(&ActorStats) -> u64| actors().map(|(n, s)| (n, f(s))).collect::<Vec<_>>();
    let help = "Live actors of the type.";
    gauges(enc, fam("actor_live", help, "actor", a(|s| read(&s.live))))?;
    let help = "Messages sent to actors of the type and not yet handled.";
    let depth = ActorKind::ALL.iter().map(|k| (k.name(), c.queue_depth(*k)));
    gauges(
        enc,
        fam("actor_queue_depth", help, "actor", depth.collect()),
    )?;
    let help = "Messages handled by actors of the type.";
    counters(
        enc,
        fam("actor_handled", help, "actor", a(|s| read(&s.handled))),
    )?;
    let help = "Errors in actors of the type (failed calls, error closes).";
    counters(
        enc,
        fam("actor_errors", help, "actor", a(|s| read(&s.errors))),
    )?;
    let help = "Time to handle one message, by actor type.";
    let handling = actors().map(|(n, s)| (n, s.handling.snapshot()));
    histograms(
        enc,
        fam("actor_handling", help, "actor", handling.collect()),
    )?;
    let help = "Time from a message's arrival to each stage: accepted (2xx), stored, \
                dispatched, forwarded (peer ack), socket (written).";
    let stages = Stage::ALL
        .iter()
        .map(|s| (s.name(), c.stages[*s as usize].snapshot()));
    histograms(
        enc,
        fam("pipeline_latency", help, "stage", stages.collect()),
    )?;
    for (backend, table, label) in [
        ("store", &c.ops.store, "op"),
        ("redis", &c.ops.redis, "command"),
        ("auth", &c.ops.auth, "op"),
    ] {
        let (lat, err) = (format!("{backend}_op"), format!("{backend}_op_errors"));
        let help = format!("Latency of {backend} operations.");
        let rows = table
            .iter()
            .map(|(n, s)| (n, s.latency.snapshot()))
            .collect();
        histograms(enc, fam(&lat, &help, label, rows))?;
        let help = format!("Failed {backend} operations.");
        let rows = table.iter().map(|(n, s)| (n, read(&s.errors))).collect();
        counters(enc, fam(&err, &help, label, rows))?;
    }
    let peers = c.peers.all();
    let p = |f: fn(&PeerStats) -> u64| peers.iter().map(|(n, s)| (&**n, f(s))).collect::<Vec<_>>();
    let help = "Envelopes waiting to be forwarded to the peer.";
    gauges(enc, fam("peer_queue", help, "peer", p(|s| read(&s.queue))))?;
    let help = "Envelopes the peer acknowledged.";
    counters(
        enc,
        fam("peer_forwarded", help, "peer", p(|s| read(&s.forwarded))),
    )?;
    let help = "Envelopes dropped for the peer (queue full or forwards failed).";
    counters(enc, fam("peer_drops", help, "peer", p(|s| read(&s.drops))))?;
    let help = "Round trip of one forward to the peer.";
    let rows = peers
        .iter()
        .map(|(n, s)| (&**n, s.latency.snapshot()))
        .collect();
    histograms(enc, fam("peer_forward", help, "peer", rows))?;
    let help = "Users with this many sessions on the node.";
    let rows = c.users_by_sessions.read();
    gauges(enc, fam("users_by_sessions", help, "sessions", rows))
}

fn counters(enc: &mut DescriptorEncoder, f: Family<'_, u64>) -> Result<(), std::fmt::Error> {
    let mut d = enc.encode_descriptor(f.name, f.help, None, MetricType::Counter)?;
    for (v, n) in f.rows {
        d.encode_family(&[(f.label, v)])?
            .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
    }
    Ok(())
}

fn gauges(enc: &mut DescriptorEncoder, f: Family<'_, u64>) -> Result<(), std::fmt::Error> {
    let mut d = enc.encode_descriptor(f.name, f.help, None, MetricType::Gauge)?;
    for (v, n) in f.rows {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        d.encode_family(&[(f.label, v)])?.encode_gauge(&n)?;
    }
    Ok(())
}

fn histograms(enc: &mut DescriptorEncoder, f: Family<'_, Snapshot>) -> Result<(), std::fmt::Error> {
    let mut d =
        enc.encode_descriptor(f.name, f.help, Some(&Unit::Seconds), MetricType::Histogram)?;
    for (v, s) in f.rows {
        d.encode_family(&[(f.label, v)])?
            .encode_histogram::<NoLabelSet>(
                s.sum_s(),
                s.count(),
                &s.buckets(),
                None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
            )?;
    }
    Ok(())
}

/// Encodes one counter reading.
fn counter<N>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: N,
) -> Result<(), std::fmt::Error>
where
    ConstCounter<N>: EncodeMetric,
{
    let m = ConstCounter::new(v);
    m.encode(encoder.encode_descriptor(name, help, unit, m.metric_type())?)
}

/// Encodes one gauge reading (saturating at `i64::MAX`).
fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let m = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    m.encode(encoder.encode_descriptor(name, help, unit, m.metric_type())?)
}
