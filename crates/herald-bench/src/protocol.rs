//! What a bench worker and its coordinator say to each other: JSON lines on the worker's
//! stdout ([`WorkerEvent`]) and plain command lines on its stdin ([`FINISH`]).
//!
//! A worker prints `progress` twice a second, `ready` once its connect phase is over, and
//! one `summary` after it was told to finish (or its stdin closed, or its lifetime ran out),
//! then exits. Latency travels as a [`Histogram`], never as raw samples.

use std::collections::BTreeMap;
use std::io::Write;

use serde::{Deserialize, Serialize};

use super::histogram::Histogram;

/// Command line that tells a worker to ack, close its connections and report.
pub const FINISH: &str = "finish";

/// Counts by a short reason string (`fd_limit`, `refused`, `4002`, …).
pub type Reasons = BTreeMap<String, u64>;

/// One line of worker output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// Running totals.
    Progress(Progress),
    /// The connect phase is over.
    Ready {
        progress: Progress,
        /// Global indices of the users whose connection failed, so publishers skip them.
        failed_users: Vec<u64>,
        /// Seconds from worker start to the last handshake.
        connect_secs: f64,
    },
    /// Final numbers; the worker exits after printing it.
    Summary(Box<WorkerSummary>),
}

/// Running totals of one worker.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Handshakes that succeeded.
    pub connected: u64,
    /// Connections that could not be opened.
    pub failed: u64,
    /// Connections open right now.
    pub open: u64,
    /// Message frames of this run received.
    pub received: u64,
}

/// Everything a worker measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerSummary {
    pub progress: Progress,
    /// Message frames from earlier runs or other producers (replays), not counted.
    pub stale: u64,
    /// Message frames whose seq was not above the last one seen on that connection.
    pub out_of_order: u64,
    /// Why connections could not be opened.
    pub connect_errors: Reasons,
    /// How open connections ended before the bench finished them (close code or error).
    pub disconnects: Reasons,
    /// Unix micros of the first and last message frame of this run (0 when none).
    pub first_recv_us: u64,
    pub last_recv_us: u64,
    /// Worker's own resident memory before finishing, bytes (0 when unknown).
    pub rss_bytes: u64,
    /// CPU time the worker used over its life, seconds.
    pub cpu_secs: f64,
    /// Send-to-receive latency of every message frame of this run, microseconds.
    pub latency: Histogram,
    /// Send-to-stored latency (the frame's `ts`, millisecond resolution), microseconds.
    pub stored_latency: Histogram,
    /// TCP connect to `101` of every connection the worker opened, microseconds.
    pub handshake: Histogram,
    /// How late the worker's 10 ms timer fired after the connect phase, microseconds: when
    /// this is large the bench itself was short of CPU.
    pub loop_lag: Histogram,
}

/// Prints one event as a JSON line on stdout; a worker whose coordinator is gone has no one
/// to tell, so write errors are ignored (the closed stdin ends the worker anyway).
pub fn emit(ev: &WorkerEvent) {
    // unwrap: these types hold only numbers, strings and maps with string keys
    let line = serde_json::to_string(ev).unwrap();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Adds `n` to the count of `reason`.
pub fn bump(map: &mut Reasons, reason: &str, n: u64) {
    *map.entry(reason.to_string()).or_default() += n;
}

/// Adds every count of `from` into `into`.
pub fn merge_reasons(into: &mut Reasons, from: &Reasons) {
    for (k, v) in from {
        bump(into, k, *v);
    }
}
