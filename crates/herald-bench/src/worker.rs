//! One bench worker process (`herald-bench worker`): mints tokens, opens its share of the
//! connections ([`conn`]) a bounded number at a time, reports over stdout, and finishes when
//! told to, when its stdin closes or when its lifetime runs out. It never publishes and
//! never decides when a phase ends (the coordinator does).
//!
//! Everything runs on one current-thread runtime to leave CPU to the server.

use std::io::BufRead;
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch, Semaphore};

use super::conn::{connection, source_addr, Conn, CLOSE_GRACE};
use super::histogram::Histogram;
use super::protocol::{emit, Progress, WorkerEvent, WorkerSummary, FINISH};
use super::shared::Shared;
use super::sys::{cpu_secs, open_files_limit, rss_bytes};
use super::{WorkerArgs, WORKER_SECRET_ENV};
use herald::auth::TokenMinter;
use herald::config::{AuthConfig, Config};
use herald::ids::UserId;

/// How often progress lines are printed.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// Longest single handshake; never longer than the connect phase itself.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval of the event-loop lag probe.
const LAG_PROBE_EVERY: Duration = Duration::from_millis(10);
/// Lifetime of minted tokens: longer than any bench run.
const TOKEN_TTL_S: u64 = 24 * 3600;

/// Opens `args.count` connections, at most `connect_concurrency` handshakes at a time;
/// returns once every handshake ended or the phase timed out.
async fn connect_all(
    args: &WorkerArgs,
    minter: &TokenMinter,
    shared: &Arc<Shared>,
    finish: &watch::Receiver<bool>,
) {
    let phase = Duration::from_secs(args.timeout_secs.max(1));
    let deadline = tokio::time::Instant::now() + phase;
    let handshake_timeout = HANDSHAKE_TIMEOUT.min(phase);
    let permits = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let mut spawned = 0;
    for user in args.first_user..args.first_user + args.count {
        let permit = tokio::select! {
            // unwrap: the semaphore is never closed
            p = permits.clone().acquire_owned() => p.unwrap(),
            _ = tokio::time::sleep_until(deadline) => break,
        };
        let name = format!("{}{user}", args.user_prefix);
        let id = match UserId::parse(&name) {
            Ok(id) => id,
            Err(e) => {
                shared.connect_failed(user, "bad_user_id", &format!("`{name}`: {e}"));
                continue;
            }
        };
        let token = match args.token_epoch {
            0 => minter.mint(&id, None, TOKEN_TTL_S),
            at => minter.mint_at(&id, None, at, at + TOKEN_TTL_S),
        };
        let target = args.targets[(user % args.targets.len() as u64) as usize];
        let conn = Conn {
            user,
            path: format!("/ws?token={token}&device={}", args.device),
            target,
            source: source_addr(user, args.source_addrs, target),
            handshake_timeout,
        };
        shared.live_tasks.fetch_add(1, Relaxed);
        tokio::spawn(connection(conn, shared.clone(), permit, finish.clone()));
        spawned += 1;
    }
    for user in args.first_user + spawned..args.first_user + args.count {
        shared.connect_failed(
            user,
            "connect_phase_timeout",
            "not started within --timeout-secs",
        );
    }
    // Handshakes still running end within their own timeout.
    while shared.connected.load(Relaxed) + shared.failed.load(Relaxed) < args.count {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Records how late a 10 ms timer fires, forever: the runtime's scheduling delay.
async fn probe_loop_lag(lag: Arc<Mutex<Histogram>>) {
    let mut due = tokio::time::Instant::now() + LAG_PROBE_EVERY;
    loop {
        tokio::time::sleep_until(due).await;
        let now = tokio::time::Instant::now();
        // unwrap: see Shared::connect_failed
        lag.lock()
            .unwrap()
            .record(now.saturating_duration_since(due).as_micros() as u64);
        due = now + LAG_PROBE_EVERY;
    }
}

fn minter(args: &WorkerArgs) -> Result<TokenMinter, String> {
    let auth = match &args.config {
        Some(path) => Config::load(Some(path)).map_err(|e| e.to_string())?.auth,
        None => AuthConfig {
            jwt_secret: std::env::var(WORKER_SECRET_ENV)
                .map_err(|_| format!("{WORKER_SECRET_ENV} is not set"))?,
            ..Default::default()
        },
    };
    TokenMinter::from_config(&auth).map_err(|e| e.to_string())
}

/// Entry point of `herald-bench worker`.
pub fn run(args: WorkerArgs) -> ExitCode {
    let minter = match minter(&args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("bench-worker {}: {e}", args.id);
            return ExitCode::from(2);
        }
    };
    if let Some(limit) = open_files_limit() {
        if args.count + 64 > limit {
            eprintln!(
                "bench-worker {}: {} connections need more than the {limit} open files this \
                 process may hold; the excess will fail with EMFILE",
                args.id, args.count
            );
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench-worker {}: cannot start runtime: {e}", args.id);
            return ExitCode::from(1);
        }
    };
    // A plain thread reads stdin: it blocks forever after the command, which must not
    // hold up the runtime's shutdown.
    let (finish_cmd_tx, finish_cmd) = oneshot::channel::<()>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(l) if l.trim() == FINISH => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = finish_cmd_tx.send(());
    });
    let code = runtime.block_on(work(args, minter, finish_cmd));
    runtime.shutdown_background();
    code
}

async fn work(
    args: WorkerArgs,
    minter: TokenMinter,
    finish_cmd: oneshot::Receiver<()>,
) -> ExitCode {
    let started = Instant::now();
    let hard_deadline = tokio::time::Instant::now() + Duration::from_secs(args.max_secs.max(1));
    let shared = Arc::new(Shared::new(args.id, args.run_id, open_files_limit()));
    let (finish_tx, finish_rx) = watch::channel(false);
    let progress = tokio::spawn({
        let shared = shared.clone();
        async move {
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            loop {
                tick.tick().await;
                emit(&WorkerEvent::Progress(shared.progress()));
            }
        }
    });

    let loop_lag = Arc::new(Mutex::new(Histogram::new()));
    let mut lag_probe = tokio::spawn(async {});
    let mut finish_cmd = std::pin::pin!(finish_cmd);
    let told_early = tokio::select! {
        _ = connect_all(&args, &minter, &shared, &finish_rx) => {
            // unwrap: see Shared::connect_failed
            let failed_users = std::mem::take(&mut *shared.failed_users.lock().unwrap());
            emit(&WorkerEvent::Ready {
                progress: shared.progress(),
                failed_users,
                connect_secs: started.elapsed().as_secs_f64(),
            });
            lag_probe = tokio::spawn(probe_loop_lag(loop_lag.clone()));
            false
        }
        _ = &mut finish_cmd => true,
        _ = tokio::time::sleep_until(hard_deadline) => true,
    };
    if !told_early {
        tokio::select! {
            _ = &mut finish_cmd => {}
            _ = tokio::time::sleep_until(hard_deadline) => {
                eprintln!("bench-worker {}: lifetime of {}s is over; finishing", args.id, args.max_secs);
            }
        }
    }

    // Measured before finishing: closing connections changes these, and the burst of
    // acks and closes would show up as loop lag.
    lag_probe.abort();
    let before_finish = shared.progress();
    let rss = rss_bytes("self").unwrap_or(0);
    let _ = finish_tx.send(true);
    let grace = tokio::time::Instant::now() + CLOSE_GRACE + Duration::from_secs(1);
    while shared.live_tasks.load(Relaxed) > 0 && tokio::time::Instant::now() < grace {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    progress.abort();
    let summary = summarize(&shared, before_finish, rss, &loop_lag);
    emit(&WorkerEvent::Summary(Box::new(summary)));
    ExitCode::SUCCESS
}

/// The worker's final numbers; `before_finish` and `rss` were read before connections
/// started closing.
fn summarize(
    shared: &Shared,
    before_finish: Progress,
    rss: u64,
    loop_lag: &Mutex<Histogram>,
) -> WorkerSummary {
    // unwrap (all locks): see Shared::connect_failed
    let latency = std::mem::take(&mut *shared.latency.lock().unwrap());
    WorkerSummary {
        progress: Progress {
            received: shared.received.load(Relaxed),
            ..before_finish
        },
        stale: shared.stale.load(Relaxed),
        out_of_order: shared.out_of_order.load(Relaxed),
        connect_errors: shared.connect_errors.lock().unwrap().clone(),
        disconnects: shared.disconnects.lock().unwrap().clone(),
        first_recv_us: shared.first_recv_us.load(Relaxed),
        last_recv_us: shared.last_recv_us.load(Relaxed),
        rss_bytes: rss,
        cpu_secs: cpu_secs("self").unwrap_or(0.0),
        latency: latency.total,
        stored_latency: latency.stored,
        handshake: latency.handshake,
        loop_lag: loop_lag.lock().unwrap().clone(),
    }
}
