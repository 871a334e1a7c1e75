//! The counters and latency histograms all connections of one bench worker share, and
//! what a text frame does to them (time this run's messages, count replays and
//! out-of-order seqs). Counters are relaxed atomics and the histograms sit behind a `std`
//! mutex, uncontended because the worker runs on one thread and nothing awaits while it is
//! held.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use super::frame;
use super::histogram::Histogram;
use super::protocol::{bump, Progress, Reasons};
use super::sys::unix_micros;

/// Latency histograms of message frames, behind one lock.
#[derive(Default)]
pub struct Latencies {
    /// Send to receipt.
    pub total: Histogram,
    /// Send to the server's `ts` (when it stored the message).
    pub stored: Histogram,
    /// TCP connect to the `101` answer: how long each opened connection's handshake took.
    pub handshake: Histogram,
}

/// Counters and results shared by the connection tasks of this worker.
pub struct Shared {
    pub worker: usize,
    /// Open-file limit, read at start: once it is reached `/proc` cannot be opened either.
    pub fd_limit: Option<u64>,
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    pub open: AtomicU64,
    pub received: AtomicU64,
    pub stale: AtomicU64,
    pub out_of_order: AtomicU64,
    pub first_recv_us: AtomicU64,
    pub last_recv_us: AtomicU64,
    /// Connection tasks not yet ended (handshaking, open or closing).
    pub live_tasks: AtomicU64,
    pub run_id: u64,
    pub latency: Mutex<Latencies>,
    pub connect_errors: Mutex<Reasons>,
    pub disconnects: Mutex<Reasons>,
    pub failed_users: Mutex<Vec<u64>>,
}

impl Shared {
    /// Zeroed counters for worker `worker` of run `run_id`.
    pub fn new(worker: usize, run_id: u64, fd_limit: Option<u64>) -> Shared {
        Shared {
            worker,
            fd_limit,
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            open: AtomicU64::new(0),
            received: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            first_recv_us: AtomicU64::new(0),
            last_recv_us: AtomicU64::new(0),
            live_tasks: AtomicU64::new(0),
            run_id,
            latency: Mutex::new(Latencies::default()),
            connect_errors: Mutex::new(Reasons::new()),
            disconnects: Mutex::new(Reasons::new()),
            failed_users: Mutex::new(Vec::new()),
        }
    }

    pub fn progress(&self) -> Progress {
        Progress {
            connected: self.connected.load(Relaxed),
            failed: self.failed.load(Relaxed),
            open: self.open.load(Relaxed),
            received: self.received.load(Relaxed),
        }
    }

    /// Counts a connection that could not be opened; the first failure of each kind is
    /// logged (with the open-file limit for EMFILE), later ones only counted.
    pub fn connect_failed(&self, user: u64, reason: &str, detail: &str) {
        self.failed.fetch_add(1, Relaxed);
        // unwrap (all three locks): the worker has one thread and never panics holding them
        self.failed_users.lock().unwrap().push(user);
        let mut errors = self.connect_errors.lock().unwrap();
        bump(&mut errors, reason, 1);
        if errors[reason] == 1 {
            let worker = self.worker;
            if reason == "fd_limit" {
                let limit = self.fd_limit.map_or("?".into(), |n| n.to_string());
                eprintln!(
                    "bench-worker {worker}: open-file limit reached (EMFILE, limit {limit}) \
                     connecting user {user}; counted as a failed connection, and so are later \
                     ones (use a smaller --conns-per-worker)"
                );
            } else {
                eprintln!(
                    "bench-worker {worker}: connecting user {user} failed ({reason}): {detail}; \
                     later `{reason}` failures are only counted"
                );
            }
        }
    }

    /// Handles one text frame: times message frames of this run, counts the rest.
    pub(crate) fn on_text(&self, text: &str, last_seq: &mut u64) {
        let Some(frame) = frame::parse(text) else {
            return;
        };
        // Replays count towards the ack too, so the next run does not get them again.
        if let Some(seq) = frame.seq {
            if seq <= *last_seq {
                self.out_of_order.fetch_add(1, Relaxed);
            }
            *last_seq = (*last_seq).max(seq);
        }
        let Some(stamp) = frame.stamp.filter(|s| s.r == self.run_id) else {
            self.stale.fetch_add(1, Relaxed);
            return;
        };
        let now = unix_micros();
        self.received.fetch_add(1, Relaxed);
        let _ = self
            .first_recv_us
            .compare_exchange(0, now, Relaxed, Relaxed);
        self.last_recv_us.fetch_max(now, Relaxed);
        // unwrap: see connect_failed
        let mut latency = self.latency.lock().unwrap();
        latency.total.record(now.saturating_sub(stamp.t));
        if let Some(ts_ms) = frame.ts_ms {
            latency
                .stored
                .record(ts_ms.saturating_mul(1000).saturating_sub(stamp.t));
        }
    }
}
