//! `[metrics]`: what the node measures beyond its counters, and the dashboard's memory.

use serde::Deserialize;

use super::{invalid, ConfigError};

/// Longest dashboard history, seconds (one sample a second).
pub const MAX_HISTORY_S: u64 = 3_600;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Handling-time and pipeline-latency histograms (two clock reads per observation).
    /// Counters, queue depths and backend latencies are always on.
    pub timing: bool,
    /// Seconds of one-second samples each node keeps for `/dashboard`.
    pub history_s: u64,
    /// How long the dashboard waits for another node's readings, ms, before showing it as
    /// down.
    pub peer_timeout_ms: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            timing: true,
            history_s: 300,
            peer_timeout_ms: 1_000,
        }
    }
}

impl MetricsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.history_s == 0 || self.history_s > MAX_HISTORY_S {
            return Err(invalid(
                "metrics.history_s",
                format!("must be 1..={MAX_HISTORY_S}"),
            ));
        }
        if !(50..=30_000).contains(&self.peer_timeout_ms) {
            return Err(invalid("metrics.peer_timeout_ms", "must be 50..=30000"));
        }
        Ok(())
    }
}
