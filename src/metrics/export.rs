//! The Prometheus side: a `prometheus-client` collector that reads [`Counters`] and the
//! process at each scrape.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use super::{Counters, Kind, ProcessReadings, READINGS};

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
        Ok(())
    }
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
