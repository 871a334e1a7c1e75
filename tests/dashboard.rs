//! `/dashboard` in a real browser: two `herald` node processes sharing a real
//! `redis-server`, sessions on both, messages posted through both, and the page opened in
//! headless Chromium (Debian's, driven by `playwright-core`, `tests/browser/driver.cjs`).
//! The page must show both nodes with the connections opened and a message rate, then a
//! node killed with -9 as down. Screenshots land in the test's output directory
//! (`target/tmp/dashboard/`).

mod common;

use std::cell::Cell;
use std::path::PathBuf;
use std::process::Stdio;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::procs::{cluster_env, connect, shared_redis, start_nodes, ADMIN_KEY, API_KEY};
use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Headless Chromium behind the driver script, one JSON answer per command.
struct Browser {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    _profile: TempDir,
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn required_env(name: &str, what: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("{name} is not set: this test needs {what} (./scripts/test.sh installs it)"),
    }
}

impl Browser {
    fn start(base: &str, admin_key: &str) -> Browser {
        let chromium = required_env("HERALD_TEST_CHROMIUM", "Debian's chromium");
        let playwright = required_env("HERALD_TEST_PLAYWRIGHT", "the playwright-core package");
        assert!(PathBuf::from(&chromium).exists(), "{chromium} is missing");
        let profile = std::env::temp_dir().join(format!("herald-chromium-{}", std::process::id()));
        std::fs::create_dir_all(&profile).unwrap();
        let driver = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/driver.cjs");
        let mut child = Command::new("node")
            .arg(driver)
            .args([base, admin_key, profile.to_str().unwrap()])
            .env("HERALD_TEST_CHROMIUM", chromium)
            .env("HERALD_TEST_PLAYWRIGHT", playwright)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (./scripts/test.sh installs nodejs)");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Browser {
            child,
            stdin,
            lines,
            _profile: TempDir(profile),
        }
    }

    async fn ask(&mut self, command: &str) -> Value {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .unwrap();
        let line = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the browser did not answer `{command}`"))
            .unwrap()
            .unwrap_or_else(|| panic!("the browser driver exited on `{command}`"));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ok"], true, "`{command}`: {v}");
        v
    }

    /// Reads the page until `pass` holds (the page refreshes once a second); the last
    /// reading either way.
    async fn read_until(&mut self, limit: Duration, pass: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.ask("read").await;
            if pass(&v) || Instant::now() >= deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn quit(mut self) {
        let _ = self.stdin.write_all(b"quit\n").await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// Posts to `to` through `base` every 50 ms while `on` is set.
fn produce(base: String, to: &'static str, on: Rc<Cell<bool>>) {
    actix_rt::spawn(async move {
        let mut i = 0;
        while on.get() {
            let body = json!({"to": to, "payload": {"n": i}}).to_string();
            let (s, v) = http(
                &format!("{base}/api/v1/messages"),
                Some(&body),
                Some(API_KEY),
            )
            .await;
            assert_eq!(s, 202, "{v}");
            i += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

fn node<'a>(page: &'a Value, name: &str) -> Option<&'a Value> {
    page["nodes"].as_array()?.iter().find(|n| n["node"] == name)
}

fn number(v: &Value) -> f64 {
    v.as_str()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1.0)
}

#[actix_rt::test]
async fn the_dashboard_shows_both_nodes_and_a_node_killed_with_9_as_down() {
    let (r, _rp) = shared_redis();
    let env = cluster_env(&r, None, "dashboard", &[]);
    let mut nodes = start_nodes(&["dash-a", "dash-b"], &env).await;
    let mut sockets = Vec::new();
    for user in ["ann", "amy", "abe"] {
        sockets.push(connect(&nodes[0], user, "").await);
    }
    for user in ["bob", "bea"] {
        sockets.push(connect(&nodes[1], user, "").await);
    }
    let via_a = Rc::new(Cell::new(true));
    let via_b = Rc::new(Cell::new(true));
    produce(nodes[0].base(), "bob", via_a.clone());
    produce(nodes[1].base(), "ann", via_b.clone());

    let mut browser = Browser::start(&nodes[0].base(), ADMIN_KEY);
    let opened = browser.ask("open /dashboard").await;
    assert_eq!(opened["status"], 200, "{opened}");
    let both_up = |p: &Value| {
        let (Some(a), Some(b)) = (node(p, "dash-a"), node(p, "dash-b")) else {
            return false;
        };
        a["up"] == true
            && b["up"] == true
            && a["connections"] == "3"
            && b["connections"] == "2"
            && number(&p["in_rate"]) > 0.0
    };
    let page = browser.read_until(Duration::from_secs(15), both_up).await;
    assert!(both_up(&page), "the page shows {page:#}");
    assert_eq!(page["connections"], "5", "{page:#}");
    assert_eq!(page["nodes_up"], "2 / 2", "{page:#}");
    assert!(number(&page["out_rate"]) > 0.0, "{page:#}");
    assert!(
        page["actor_rows"].as_u64().unwrap() > 7,
        "the actor table has rows for both nodes: {page:#}"
    );
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&out).unwrap();
    let shot = out.join("two-nodes.png");
    browser.ask(&format!("screenshot {}", shot.display())).await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);

    // Node b dies without a word: its sockets, its registry entry and its answers stop.
    via_b.set(false);
    tokio::time::sleep(Duration::from_millis(100)).await;
    nodes[1].kill9();
    let killed = Instant::now();
    let b_down = |p: &Value| node(p, "dash-b").is_some_and(|b| b["up"] == false);
    let page = browser.read_until(Duration::from_secs(10), b_down).await;
    assert!(b_down(&page), "dash-b still shown up: {page:#}");
    eprintln!("dash-b shown down {:?} after kill -9", killed.elapsed());
    let a = node(&page, "dash-a").unwrap();
    assert_eq!(a["up"], true, "{page:#}");
    assert_eq!(page["nodes_up"], "1 / 2", "{page:#}");
    let down = out.join("node-down.png");
    browser.ask(&format!("screenshot {}", down.display())).await;
    via_a.set(false);
    browser.quit().await;
    drop(sockets);
}
