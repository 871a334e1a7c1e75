//! The worker processes as the coordinator sees them: starting one `herald-bench worker`
//! per slice of users, reading the events each prints on stdout, and keeping its latest
//! numbers.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use super::protocol::{Progress, WorkerEvent, WorkerSummary};
use super::setup::{Setup, WorkerAuth};
use super::WORKER_SECRET_ENV;

/// Events from the workers: `(worker index, event)`, `None` once its stdout closed.
pub type Events = mpsc::UnboundedSender<(usize, Option<WorkerEvent>)>;

/// One worker process as the coordinator sees it.
pub struct Worker {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub latest: Progress,
    pub ready: bool,
    pub failed_users: Vec<u64>,
    pub summary: Option<WorkerSummary>,
    /// Its stdout closed: it exited or crashed.
    pub gone: bool,
}

impl Worker {
    /// Takes in one event from worker `idx`.
    pub fn apply(&mut self, idx: usize, ev: Option<WorkerEvent>) {
        match ev {
            Some(WorkerEvent::Progress(p)) => self.latest = p,
            Some(WorkerEvent::Ready {
                progress,
                failed_users,
                connect_secs: _,
            }) => {
                self.latest = progress;
                self.ready = true;
                self.failed_users = failed_users;
            }
            Some(WorkerEvent::Summary(s)) => {
                self.latest = s.progress;
                self.summary = Some(*s);
            }
            None => {
                if self.summary.is_none() {
                    eprintln!("bench: worker {idx} ended without a summary; its numbers are lost");
                }
                self.gone = true;
            }
        }
    }
}

/// Starts one worker per `conns_per_worker` users; each one's events go to `tx`.
pub fn spawn(setup: &Setup, tx: &Events) -> Result<Vec<Worker>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let a = &setup.args;
    let n_workers = a.conns.div_ceil(a.conns_per_worker);
    let targets = setup
        .targets
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut workers = Vec::new();
    for id in 0..n_workers {
        let mut cmd = command(&exe, setup, id, &targets);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start worker {id}: {e}"))?;
        let stdin = child.stdin.take();
        // unwrap: stdout was configured as piped by `command`
        let stdout = child.stdout.take().unwrap();
        let tx = tx.clone();
        let idx = id as usize;
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<WorkerEvent>(&line) {
                    Ok(ev) => {
                        let _ = tx.send((idx, Some(ev)));
                    }
                    Err(e) => eprintln!("bench: worker {idx} said something unreadable ({e})"),
                }
            }
            let _ = tx.send((idx, None));
        });
        workers.push(Worker {
            child,
            stdin,
            latest: Progress::default(),
            ready: false,
            failed_users: Vec::new(),
            summary: None,
            gone: false,
        });
    }
    Ok(workers)
}

/// The command line of worker `id`: its slice of users and the shared settings.
fn command(exe: &std::path::Path, setup: &Setup, id: u64, targets: &str) -> Command {
    let a = &setup.args;
    let first = id * a.conns_per_worker;
    let count = a.conns_per_worker.min(a.conns - first);
    // Upper bound of the whole run, so workers stop even if the coordinator hangs.
    let max_secs = 5 * a.timeout_secs + a.idle_secs + a.drain_secs + 60;
    let mut cmd = Command::new(exe);
    cmd.arg("worker")
        .args(["--id", &id.to_string()])
        .args(["--targets", targets])
        .args(["--first-user", &first.to_string()])
        .args(["--count", &count.to_string()])
        .args(["--user-prefix", &a.user_prefix])
        .args(["--device", &a.device])
        .args(["--source-addrs", &setup.source_addrs.to_string()])
        .args(["--connect-concurrency", &a.connect_concurrency.to_string()])
        .args(["--timeout-secs", &a.timeout_secs.to_string()])
        .args(["--max-secs", &max_secs.to_string()])
        .args(["--run-id", &setup.run_id.to_string()])
        .args(["--token-epoch", &a.token_epoch.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    match &setup.worker_auth {
        WorkerAuth::Config(path) => {
            cmd.arg("--config").arg(path);
        }
        WorkerAuth::Secret(s) => {
            cmd.env(WORKER_SECRET_ENV, s);
        }
    }
    cmd
}
