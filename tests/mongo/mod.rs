//! The MongoDB store tests' harness: a MongoDB wire-protocol server per test (shared from
//! the environment or started here), a database of the test's own, and helpers.
//!
//! The server is `HERALD_TEST_MONGO_URL` when set (`./scripts/test.sh` starts one);
//! otherwise each test starts its own `secantusd-rs` (from `$HERALD_CACHE/secantus/bin`,
//! default `~/.cache/herald`, or `PATH`) on a free port in a temporary directory and stops
//! it at the end. Without either the tests fail, saying to run `./scripts/test.sh`. Every
//! test uses its own database, so they run in parallel.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use herald::ids::UserId;
use herald::store::mongo::{MongoStore, MongoStoreConfig};
use herald::store::{NewMessage, Target};
use mongodb::event::command::CommandEvent;
use mongodb::event::EventHandler;
use serde_json::value::RawValue;

/// Longest a test waits for a condition it polls for.
pub const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// A MongoDB server for one test: shared (from the environment) or started here.
pub struct Server {
    pub url: String,
    /// The `secantusd-rs` this test started, stopped on drop.
    pub child: Option<Child>,
    /// Its data directory, removed on drop.
    pub dir: Option<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Server {
    /// The environment's server, or a fresh one.
    pub fn get() -> Server {
        match std::env::var("HERALD_TEST_MONGO_URL") {
            Ok(url) if !url.is_empty() => Server {
                url,
                child: None,
                dir: None,
            },
            _ => Server::start_own(),
        }
    }

    /// A `secantusd-rs` of this test's own (needed to kill it), on an ephemeral port.
    pub fn start_own() -> Server {
        let bin = secantusd().unwrap_or_else(|| {
            panic!(
                "no MongoDB test server: HERALD_TEST_MONGO_URL is unset and secantusd-rs is \
                 neither in $HERALD_CACHE/secantus/bin nor on PATH; run ./scripts/test.sh, \
                 which installs and starts it"
            )
        });
        let dir = std::env::temp_dir().join(format!("herald-mongo-{}", unique("d")));
        std::fs::create_dir_all(&dir).expect("create server data dir");
        let log = std::fs::File::create(dir.join("server.log")).expect("create server log");
        let mut child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", "0", "--storage-path"])
            .arg(dir.join("data"))
            .args(["--cache-size", "256M", "--log-file-max", "16MB"])
            .args(["--log-level", "WARNING"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        // It prints `… listening on 127.0.0.1:<port>` once ready; keep draining its stdout so
        // it never blocks on a full pipe.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.trim().to_string());
                    break;
                }
            }
            for _ in lines {}
        });
        let mut server = Server {
            url: String::new(),
            child: Some(child),
            dir: Some(dir),
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => server.url = format!("mongodb://{addr}"),
            Err(_) => panic!("secantusd-rs did not report its port within 30 s"),
        }
        server
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn secantusd() -> Option<PathBuf> {
    let cache = std::env::var_os("HERALD_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/herald")));
    let cached = cache.map(|c| c.join("secantus/bin/secantusd-rs"));
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("secantusd-rs"))
            .find(|f| f.is_file())
    });
    cached.filter(|p| p.is_file()).or(on_path)
}

/// A name unique in this machine's recent history: prefix, pid, time and a counter.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros();
    format!(
        "{prefix}_{}_{:x}_{}",
        std::process::id(),
        t & 0xffff_ffff,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A test's server and its own database.
pub struct Fixture {
    pub server: Server,
    pub cfg: MongoStoreConfig,
}

impl Fixture {
    pub fn new(test: &str) -> Fixture {
        let server = Server::get();
        let cfg = MongoStoreConfig {
            url: server.url.clone(),
            database: unique(&format!("ht_{test}")),
            ..MongoStoreConfig::default()
        };
        Fixture { server, cfg }
    }

    pub async fn store(&self) -> MongoStore {
        MongoStore::connect(&self.cfg)
            .await
            .expect("store connects")
    }

    /// A store that counts the commands it sends, by `(command, collection)`.
    pub async fn watched_store(&self) -> (MongoStore, Commands) {
        let seen: Commands = Arc::default();
        let sink = seen.clone();
        let store = MongoStore::connect_with(&self.cfg, move |o| {
            o.command_event_handler = Some(EventHandler::callback(move |ev| {
                if let CommandEvent::Started(s) = ev {
                    let coll = s
                        .command
                        .get_str(&s.command_name)
                        .unwrap_or_default()
                        .to_string();
                    *sink
                        .lock()
                        .unwrap()
                        .entry((s.command_name.clone(), coll))
                        .or_insert(0) += 1;
                }
            }))
        })
        .await
        .expect("store connects");
        (store, seen)
    }

    /// The test's database, for looking at what the store wrote.
    pub async fn db(&self) -> mongodb::Database {
        mongodb::Client::with_uri_str(&self.server.url)
            .await
            .expect("raw client")
            .database(&self.cfg.database)
    }

    /// Drops the test's database (a shared server stays small).
    pub async fn finish(self) {
        let _ = self.db().await.drop().await;
    }
}

pub type Commands = Arc<Mutex<HashMap<(String, String), u64>>>;

pub fn count(seen: &Commands, command: &str, coll: &str) -> u64 {
    let map = seen.lock().unwrap();
    map.get(&(command.to_string(), coll.to_string()))
        .copied()
        .unwrap_or(0)
}

pub fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

pub fn msg(users: &[&str], key: Option<&str>, ttl_s: u64, payload: &str) -> NewMessage {
    NewMessage {
        target: Target::Users(users.iter().map(|u| user(u)).collect()),
        topic: Some("t".into()),
        payload: RawValue::from_string(payload.into()).unwrap(),
        ttl_s,
        idempotency_key: key.map(String::from),
        arrived_us: 0,
    }
}

pub fn seqs(page: &herald::store::Page) -> Vec<u64> {
    page.messages.iter().map(|m| m.0).collect()
}

/// Polls `check` until it holds, failing after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
