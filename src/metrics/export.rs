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
