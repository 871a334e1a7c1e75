//! A `secantusd-rs` (MongoDB wire protocol) child process for durability tests: the shared
//! one from the environment, or one started here on a free port.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::procs::{free_port, wait_for_port};
use super::WAIT;

const MONGO_HOW_TO: &str = "durability tests need a MongoDB-protocol server: run them with \
     ./scripts/test.sh (it installs SecantusDB's secantusd-rs into $HERALD_CACHE, default \
     ~/.cache/herald), or set HERALD_TEST_MONGO_URL=mongodb://127.0.0.1:PORT";

/// Finds `secantusd-rs`: in `$HERALD_CACHE/secantus/bin`, then on PATH.
fn secantus_bin() -> PathBuf {
    let cache = std::env::var("HERALD_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/herald")
        });
    let cached = cache.join("secantus/bin/secantusd-rs");
    if cached.exists() {
        return cached;
    }
    PathBuf::from("secantusd-rs")
}

/// A MongoDB wire-protocol server (SecantusDB) started by the test, with its own storage.
pub struct MongoProc {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl MongoProc {
    pub fn start() -> MongoProc {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("herald-mongo-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut m = MongoProc {
            port,
            child: None,
            dir,
        };
        m.restart();
        m
    }

    /// (Re)starts the server on the same port and storage: data survives.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new(secantus_bin())
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--storage-path",
                self.dir.to_str().unwrap(),
                "--cache-size",
                "256M",
                "--log-level",
                "WARNING",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start secantusd-rs ({e}); {MONGO_HOW_TO}"));
        self.child = Some(child);
        wait_for_port(self.port, "secantusd-rs");
        wait_until_writable(&self.url());
    }

    /// Stops the server the way an operator would (SIGTERM), waiting for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }
}

/// Waits until the server at `url` is a writable primary: a freshly started server accepts
/// connections before it has elected itself, and a node started in between (with the tests'
/// short store timeouts) would give up on its startup writes under a loaded machine.
fn wait_until_writable(url: &str) {
    let url = format!("{url}/?serverSelectionTimeoutMS=500&directConnection=true");
    let ready = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let deadline = tokio::time::Instant::now() + WAIT;
            while tokio::time::Instant::now() < deadline {
                if let Ok(client) = mongodb::Client::with_uri_str(&url).await {
                    let hello = client
                        .database("admin")
                        .run_command(mongodb::bson::doc! {"hello": 1})
                        .await;
                    if let Ok(reply) = hello {
                        if reply.get_bool("isWritablePrimary").unwrap_or(false) {
                            return true;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        })
    })
    .join()
    .unwrap();
    assert!(
        ready,
        "secantusd-rs did not become a writable primary within {WAIT:?}"
    );
}

impl Drop for MongoProc {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The MongoDB URL for tests that only need *a* server: the test script's, or a private one.
pub fn shared_mongo() -> (String, Option<MongoProc>) {
    match std::env::var("HERALD_TEST_MONGO_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            let m = MongoProc::start();
            (m.url(), Some(m))
        }
    }
}
