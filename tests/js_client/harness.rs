//! The harness of `js_client.rs`: the browser behind `tests/browser/client_driver.cjs`
//! (one JSON command per line), tolerant POSTs that say whether a message was accepted,
//! refused or left unanswered (a node dying mid-request), and the ledger that checks a page
//! client showed every accepted message exactly once, in order.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::common;
use crate::common::procs::{free_port, request_on, HeraldProc, API_KEY, JWT_SECRET};

/// Headless Chromium behind the driver script, one JSON answer per command.
pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    profile: PathBuf,
}

fn required_env(name: &str, what: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("{name} is not set: this test needs {what} (./scripts/test.sh installs it)"),
    }
}

impl Browser {
    /// Starts the browser and opens `path` of the node at `base` (loading the client).
    pub async fn open(base: &str, path: &str) -> Browser {
        Self::start(base, path, false).await
    }

    /// The same, with the page's CSP not applied: its clients may dial other ports.
    pub async fn open_without_csp(base: &str, path: &str) -> Browser {
        Self::start(base, path, true).await
    }

    async fn start(base: &str, path: &str, bypass_csp: bool) -> Browser {
        let chromium = required_env("HERALD_TEST_CHROMIUM", "Debian's chromium");
        let playwright = required_env("HERALD_TEST_PLAYWRIGHT", "the playwright-core package");
        assert!(PathBuf::from(&chromium).exists(), "{chromium} is missing");
        let profile = std::env::temp_dir().join(format!(
            "herald-jsclient-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&profile).unwrap();
        let driver = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/client_driver.cjs"
        );
        let mut child = Command::new("node")
            .args([driver, base, profile.to_str().unwrap()])
            .args(bypass_csp.then_some("bypass-csp"))
            .env("HERALD_TEST_CHROMIUM", chromium)
            .env("HERALD_TEST_PLAYWRIGHT", playwright)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (./scripts/test.sh installs nodejs)");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut b = Browser {
            child,
            stdin,
            lines,
            profile,
        };
        let opened = b.ask(json!({"cmd": "open", "path": path})).await;
        assert_eq!(opened["status"], 200, "{opened}");
        b
    }

    pub async fn ask(&mut self, command: Value) -> Value {
        let line = format!("{command}\n");
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the browser did not answer {command}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the browser driver exited on {command}"));
        let v: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(v["ok"], true, "{command}: {v}");
        v
    }

    /// Every client whose id starts with `prefix`, by id.
    pub async fn clients(&mut self, prefix: &str) -> serde_json::Map<String, Value> {
        let v = self.ask(json!({"cmd": "read", "prefix": prefix})).await;
        v["clients"].as_object().unwrap().clone()
    }

    /// Reads client `id` until `pass` holds; panics with the last reading after `limit`.
    pub async fn until(
        &mut self,
        id: &str,
        limit: Duration,
        pass: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.ask(json!({"cmd": "read", "id": id})).await;
            let client = v["clients"][id].clone();
            if pass(&client) {
                return client;
            }
            assert!(
                Instant::now() < deadline,
                "client {id} after {limit:?}: {client:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn quit(mut self) {
        let _ = self.stdin.write_all(b"{\"cmd\":\"quit\"}\n").await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A connection token with `exp` `ttl_s` seconds ahead, for nodes started from config.toml.
pub fn short_token(user: &str, ttl_s: u64) -> String {
    let cfg = herald::config::AuthConfig {
        jwt_secret: JWT_SECRET.into(),
        ..Default::default()
    };
    let user = herald::ids::UserId::parse(user).unwrap();
    herald::auth::TokenMinter::from_config(&cfg)
        .unwrap()
        .mint(&user, None, ttl_s)
}

/// What became of one POST.
pub enum Posted {
    Accepted,
    /// Not stored: the node refused it, or nothing listened.
    Refused,
    /// Sent, but no answer came (the node died meanwhile): it may or may not be stored.
    Unknown,
}

/// POSTs `{"n": n}` to `user` on the node at `port`, giving up after 5 s.
pub async fn try_post(port: u16, user: &str, n: u64) -> Posted {
    let body = json!({"to": user, "topic": "t", "payload": {"n": n}}).to_string();
    let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return Posted::Refused;
    };
    let exchange = request_on(s, "POST", "/api/v1/messages", API_KEY, &body);
    match tokio::time::timeout(Duration::from_secs(5), exchange).await {
        Ok(Some((status, _))) if (200..300).contains(&status) => Posted::Accepted,
        Ok(Some(_)) => Posted::Refused,
        _ => Posted::Unknown,
    }
}

/// The messages posted to one user, numbered in posting order, and what became of each.
pub struct Ledger {
    user: String,
    next: u64,
    pub accepted: Vec<u64>,
    pub unknown: Vec<u64>,
}

impl Ledger {
    pub fn new(user: &str) -> Self {
        Ledger {
            user: user.into(),
            next: 0,
            accepted: Vec::new(),
            unknown: Vec::new(),
        }
    }

    pub async fn post(&mut self, port: u16, count: usize) {
        for _ in 0..count {
            let n = self.next;
            self.next += 1;
            match try_post(port, &self.user, n).await {
                Posted::Accepted => self.accepted.push(n),
                Posted::Unknown => self.unknown.push(n),
                Posted::Refused => {}
            }
        }
    }

    /// Every accepted message was shown, and each shown one was posted.
    pub fn all_shown(&self, client: &Value) -> bool {
        let shown = numbers(client);
        self.accepted.iter().all(|n| shown.contains(n))
    }

    /// Exactly once and in order: seqs and posting numbers strictly increase, every accepted
    /// message is there, and nothing shown was refused.
    pub fn check(&self, client: &Value) {
        let seqs: Vec<u64> = messages(client)
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        let shown = numbers(client);
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq order: {seqs:?}");
        assert!(
            shown.windows(2).all(|w| w[0] < w[1]),
            "posting order: {shown:?}"
        );
        for n in &self.accepted {
            assert!(shown.contains(n), "accepted message {n} missing: {shown:?}");
        }
        for n in &shown {
            let known = self.accepted.contains(n) || self.unknown.contains(n);
            assert!(known, "message {n} shown but its POST was refused");
        }
    }
}

pub fn messages(client: &Value) -> impl Iterator<Item = &Value> {
    client["messages"].as_array().unwrap().iter()
}

pub fn numbers(client: &Value) -> Vec<u64> {
    messages(client)
        .map(|m| m["payload"]["n"].as_u64().unwrap())
        .collect()
}

pub fn states(client: &Value) -> &Vec<Value> {
    client["states"].as_array().unwrap()
}

pub fn is_open(client: &Value) -> bool {
    client["state"] == "open"
}

pub async fn wait_ready(node: &HeraldProc) {
    common::eventually(&format!("{} ready", node.name), || async {
        common::http(&format!("{}/readyz", node.base()), None, None)
            .await
            .0
            == 200
    })
    .await;
}
