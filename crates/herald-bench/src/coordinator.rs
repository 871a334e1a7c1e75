//! `herald-bench run` itself: checks the flags, starts the worker processes (`fleet`), drives the phases
//! (connect, idle, publish, drain, finish) with a deadline each, prints progress on stderr
//! and the report on stdout. It opens no WebSocket itself; it publishes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::fleet;
use super::protocol::{Progress, WorkerEvent, FINISH};
use super::publisher::{self, Live, Plan};
use super::report::{counter_delta, explain_missed_rate, merge_summaries, per, r3, Report};
use super::setup::{setup, Setup};
use super::sys::{cpu_secs, rss_bytes};
use super::{BenchArgs, Mode};

/// Interval of the progress line.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Extra time a worker gets beyond the connect timeout to report `ready` (start-up,
/// handshakes still running at the deadline).
const READY_SLACK: Duration = Duration::from_secs(15);

/// `herald-bench run`.
pub fn run(args: BenchArgs) -> ExitCode {
    let setup = match setup(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("herald-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald-bench: cannot start runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(async move {
        // Before any worker starts: a session opened in between would skew both.
        let pid = setup.args.server_pid;
        let baseline = Baseline {
            counters: server_counters(&setup.targets, setup.admin_key.as_deref()).await,
            rss: pid.and_then(|p| rss_bytes(&p.to_string())),
            cpu: pid.and_then(|p| cpu_secs(&p.to_string())),
        };
        let mut run = match Run::start(setup) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("herald-bench: {e}");
                return ExitCode::from(1);
            }
        };
        let report = run.phases(baseline).await;
        // unwrap: the report holds numbers, strings and string-keyed maps only
        println!("{}", serde_json::to_string(&report).unwrap());
        if report.connected == 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        }
    });
    runtime.shutdown_background();
    code
}

/// Server readings taken before the workers start.
struct Baseline {
    counters: Option<BTreeMap<String, u64>>,
    rss: Option<u64>,
    cpu: Option<f64>,
}

/// The summed `/api/v1/stats` counters of all targets (asked with `admin_key`), if every
/// one answers.
async fn server_counters(
    targets: &[SocketAddr],
    admin_key: Option<&str>,
) -> Option<BTreeMap<String, u64>> {
    let mut sum: BTreeMap<String, u64> = BTreeMap::new();
    for t in targets {
        for (k, v) in publisher::server_counters(*t, admin_key).await? {
            *sum.entry(k).or_default() += v;
        }
    }
    Some(sum)
}

/// A running bench.
struct Run {
    setup: Setup,
    workers: Vec<fleet::Worker>,
    events: mpsc::UnboundedReceiver<(usize, Option<WorkerEvent>)>,
    started: Instant,
    phase: &'static str,
    next_print: Instant,
    live: Arc<Live>,
    /// Woken by background jobs (publishing) when they end, so phases end promptly.
    wake: Arc<tokio::sync::Notify>,
    /// Last time the total of received frames grew.
    last_growth: Instant,
    last_received: u64,
}

impl Run {
    /// Starts the workers.
    fn start(setup: Setup) -> Result<Run, String> {
        let (tx, events) = mpsc::unbounded_channel();
        let workers = fleet::spawn(&setup, &tx)?;
        let now = Instant::now();
        Ok(Run {
            setup,
            workers,
            events,
            started: now,
            phase: "connect",
            next_print: now + PROGRESS_EVERY,
            live: Arc::new(Live::default()),
            wake: Arc::new(tokio::sync::Notify::new()),
            last_growth: now,
            last_received: 0,
        })
    }

    fn total(&self) -> Progress {
        let mut t = Progress::default();
        for w in &self.workers {
            t.connected += w.latest.connected;
            t.failed += w.latest.failed;
            t.open += w.latest.open;
            t.received += w.latest.received;
        }
        t
    }

    fn on_event(&mut self, idx: usize, ev: Option<WorkerEvent>) {
        self.workers[idx].apply(idx, ev);
        let received = self.total().received;
        if received > self.last_received {
            self.last_received = received;
            self.last_growth = Instant::now();
        }
    }

    fn print_progress(&self) {
        let t = self.total();
        eprintln!(
            "bench: {:>4.0}s {:<8} open={} connected={}/{} failed={} sent={} accepted={} received={}",
            self.started.elapsed().as_secs_f64(),
            self.phase,
            t.open,
            t.connected,
            self.setup.args.conns,
            t.failed,
            self.live.sent.load(Relaxed),
            self.live.accepted.load(Relaxed),
            t.received,
        );
    }

    /// Handles worker events and prints progress until `done` holds or `deadline` passes;
    /// true when `done` held.
    async fn pump_until(&mut self, deadline: Instant, mut done: impl FnMut(&Run) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            if now >= self.next_print {
                self.print_progress();
                self.next_print = now + PROGRESS_EVERY;
            }
            let wake = self.next_print.min(deadline);
            tokio::select! {
                ev = self.events.recv() => match ev {
                    Some((idx, ev)) => self.on_event(idx, ev),
                    // Every reader ended: nothing more will come; let the deadline decide.
                    None => tokio::time::sleep_until(wake).await,
                },
                _ = tokio::time::sleep_until(wake) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    fn server_rss(&self) -> Option<u64> {
        self.setup
            .args
            .server_pid
            .and_then(|p| rss_bytes(&p.to_string()))
    }

    fn server_cpu(&self) -> Option<f64> {
        self.setup
            .args
            .server_pid
            .and_then(|p| cpu_secs(&p.to_string()))
    }

    /// Runs every phase and builds the report.
    async fn phases(&mut self, baseline: Baseline) -> Report {
        let a = self.setup.args.clone();
        let timeout = Duration::from_secs(a.timeout_secs);
        let mut report = Report {
            mode: Some(a.mode),
            targets: a.targets.clone(),
            run_id: self.setup.run_id,
            conns: a.conns,
            workers: self.workers.len(),
            idle_secs: a.idle_secs,
            messages: a.messages,
            rate_offered: a.rate,
            batch_size: a.batch_size,
            publish_conns: a.publish_conns,
            ..Default::default()
        };
        report.rss_before_bytes = baseline.rss;

        // Connect.
        let connect_start = self.started;
        let server_cpu = baseline.cpu;
        let all_ready = self
            .pump_until(connect_start + timeout + READY_SLACK, |r| {
                r.workers.iter().all(|w| w.ready || w.gone)
            })
            .await;
        if !all_ready {
            eprintln!("bench: not every worker finished connecting within --timeout-secs");
        }
        report.connect_secs = r3(connect_start.elapsed().as_secs_f64());
        let t = self.total();
        report.connected = t.connected;
        report.connect_rate = per(t.connected as f64, report.connect_secs);
        report.server_cpu_connect_secs = cpu_delta(server_cpu, self.server_cpu());
        self.print_progress();

        // Idle, then memory.
        if a.idle_secs > 0 {
            self.phase = "idle";
            let until = Instant::now() + Duration::from_secs(a.idle_secs);
            self.pump_until(until, |_| false).await;
        }
        report.rss_after_bytes = self.server_rss();
        if let (Some(b), Some(after)) = (report.rss_before_bytes, report.rss_after_bytes) {
            if report.connected > 0 {
                let per_conn = (after as i64 - b as i64) / report.connected as i64;
                report.rss_per_conn_bytes = Some(per_conn);
                report.rss_per_conn_kb = Some(r3(per_conn as f64 / 1024.0));
            }
        }

        // Publish and drain.
        report.open_at_publish = self.total().open;
        let mut first_send_us = 0;
        if a.mode != Mode::None && a.messages > 0 && report.open_at_publish > 0 {
            first_send_us = self.publish_and_drain(&mut report, timeout).await;
        }
        let counters_after =
            server_counters(&self.setup.targets, self.setup.admin_key.as_deref()).await;
        if let (Some(b), Some(after)) = (&baseline.counters, counters_after) {
            report.server_counters = Some(counter_delta(b, &after));
        }

        // Finish: workers ack, close and send summaries.
        self.phase = "finish";
        self.finish(timeout).await;
        merge_summaries(&mut report, &self.workers, first_send_us);
        if report.offered_rate_held == Some(false) {
            explain_missed_rate(&report);
        }
        report.elapsed_secs = r3(self.started.elapsed().as_secs_f64());
        report
    }

    /// Publishes the plan, then waits for the deliveries; returns the unix micros of the
    /// first send (0 when nothing was sent).
    async fn publish_and_drain(&mut self, report: &mut Report, timeout: Duration) -> u64 {
        let a = self.setup.args.clone();
        let mut first_send_us = 0;
        self.phase = "publish";
        let server_cpu = self.server_cpu();
        let own_cpu = cpu_secs("self");
        let failed: std::collections::HashSet<u64> = self
            .workers
            .iter()
            .flat_map(|w| w.failed_users.iter().copied())
            .collect();
        let plan = Arc::new(Plan {
            mode: a.mode,
            messages: a.messages,
            rate: a.rate,
            batch_size: a.batch_size,
            conns: a.publish_conns,
            targets: self.setup.targets.clone(),
            api_key: self.setup.api_key.clone(),
            run_id: self.setup.run_id,
            payload_bytes: a.payload_bytes,
            user_prefix: a.user_prefix.clone(),
            users: (0..a.conns).filter(|u| !failed.contains(u)).collect(),
            deadline: Instant::now() + timeout,
        });
        let (live, wake) = (self.live.clone(), self.wake.clone());
        let job = tokio::spawn(async move {
            let outcome = publisher::publish(plan, live).await;
            wake.notify_one();
            outcome
        });
        let publish_end = Instant::now() + timeout + Duration::from_secs(10);
        self.pump_until(publish_end, |_| job.is_finished()).await;
        if !job.is_finished() {
            job.abort();
            eprintln!("bench: publishing did not end in time; aborted");
        }
        if let Ok(o) = job.await {
            first_send_us = o.first_send_us;
            report.publish_secs = r3(o.secs);
            report.publish_rate = per(o.accepted as f64, o.secs);
            report.accepted = o.accepted;
            report.rejected = o.rejected;
            report.publish_failed = o.failed;
            report.unsent = o.unsent;
            report.late_requests = o.late;
            report.http_status = o.http_status;
            report.refusals = o.refusals;
            report.publish_errors = o.errors;
        }
        report.expected = match a.mode {
            Mode::Broadcast => report.accepted * report.open_at_publish,
            _ => report.accepted,
        };

        // Drain.
        self.phase = "drain";
        let drain_start = Instant::now();
        let expected = report.expected;
        let quiet = Duration::from_secs(a.drain_secs.max(1));
        self.last_growth = Instant::now();
        self.pump_until(drain_start + timeout, |r| {
            r.total().received >= expected || r.last_growth.elapsed() >= quiet
        })
        .await;
        report.drain_secs = r3(drain_start.elapsed().as_secs_f64());
        report.server_cpu_publish_secs = cpu_delta(server_cpu, self.server_cpu());
        report.publisher_cpu_secs = cpu_delta(own_cpu, cpu_secs("self")).unwrap_or(0.0);
        first_send_us
    }

    async fn finish(&mut self, timeout: Duration) {
        for w in &mut self.workers {
            if let Some(mut stdin) = w.stdin.take() {
                let _ = stdin.write_all(format!("{FINISH}\n").as_bytes()).await;
                let _ = stdin.flush().await;
            }
        }
        let deadline = Instant::now() + timeout;
        self.pump_until(deadline, |r| {
            r.workers.iter().all(|w| w.summary.is_some() || w.gone)
        })
        .await;
        for (i, w) in self.workers.iter_mut().enumerate() {
            if w.summary.is_none() {
                eprintln!("bench: worker {i} did not report in time; killing it");
                let _ = w.child.start_kill();
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), w.child.wait()).await;
        }
    }
}

/// CPU seconds between two readings, when both exist.
fn cpu_delta(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    Some(r3(after? - before?))
}
