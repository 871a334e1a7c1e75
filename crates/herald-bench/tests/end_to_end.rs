//! The load generator against a real node (in this process, on 127.0.0.1:0): its
//! hand-written WebSocket client opens every connection, receives and counts every
//! targeted and broadcast message, and reports refused upgrades by status. Small counts,
//! loopback only.

use std::collections::BTreeMap;
use std::process::Command;

use herald::config::Config;
use herald::server::Node;
use herald_bench::{DEFAULT_ADMIN_KEY, DEFAULT_API_KEY, DEFAULT_JWT_SECRET};
use serde_json::Value;

async fn start_node() -> Node {
    let env: BTreeMap<String, String> = [
        ("HERALD_AUTH__JWT_SECRET", DEFAULT_JWT_SECRET.to_string()),
        ("HERALD_AUTH__API_KEYS", format!("[\"{DEFAULT_API_KEY}\"]")),
        (
            "HERALD_AUTH__ADMIN_KEYS",
            format!("[\"{DEFAULT_ADMIN_KEY}\"]"),
        ),
        ("HERALD_SERVER__WORKERS", "1".into()),
        ("HERALD_SERVER__SHUTDOWN_TIMEOUT_S", "3".into()),
        ("HERALD_LOG__LEVEL", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let cfg = Config::from_sources("", &env).expect("test config");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    herald::server::start(cfg, listener)
        .await
        .expect("node starts")
}

/// Runs `herald-bench run` with `args` (split at spaces) against a fresh node; returns its
/// exit code and report.
async fn bench(args: &str) -> (i32, Value) {
    let mut node = start_node().await;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald-bench"));
    cmd.args([
        "run",
        "--targets",
        &node.addr.to_string(),
        "--timeout-secs",
        "20",
    ])
    .args(["--drain-secs", "1", "--user-prefix", "e2e-"])
    .args(args.split(' '));
    // Off the runtime's thread: the node runs on this thread's actix system too.
    let out = actix_rt::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("herald-bench runs");
    node.shutdown().await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

fn count(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key}: {report}"))
}

#[actix_rt::test]
async fn every_targeted_message_is_received_once_and_in_order() {
    let (code, report) = bench("--conns 200 --mode targeted --messages 2000 --rate 4000").await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(count(&report, "connected"), 200, "{report}");
    assert_eq!(count(&report, "accepted"), 2000, "{report}");
    assert_eq!(count(&report, "received"), 2000, "{report}");
    assert_eq!(count(&report, "loss"), 0, "{report}");
    assert_eq!(count(&report, "out_of_order"), 0, "{report}");
    assert_eq!(report["disconnects"], serde_json::json!({}), "{report}");
}

#[actix_rt::test]
async fn every_broadcast_reaches_every_connection() {
    let (code, report) = bench("--conns 300 --mode broadcast --messages 20 --rate 50").await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(count(&report, "expected"), 300 * 20, "{report}");
    assert_eq!(count(&report, "received"), 300 * 20, "{report}");
    assert_eq!(count(&report, "loss"), 0, "{report}");
}

#[actix_rt::test]
async fn refused_upgrades_are_counted_by_http_status() {
    let wrong_secret = "--jwt-secret not-the-node-secret-0123456789abcdef";
    let (code, report) = bench(&format!("--conns 20 --mode none {wrong_secret}")).await;
    assert_eq!(code, 1, "nothing connected: {report}");
    assert_eq!(count(&report, "connect_failed"), 20, "{report}");
    assert_eq!(report["connect_errors"]["http_401"], 20, "{report}");
}

#[actix_rt::test]
async fn a_publisher_pool_too_small_for_the_offered_rate_reports_late_requests() {
    // One connection, 3 000 requests due within 3 ms: their round trips alone take longer,
    // so the later ones go out more than 10 ms after they were due.
    let (_, report) =
        bench("--conns 10 --mode targeted --messages 3000 --rate 1000000 --publish-conns 1").await;
    assert_eq!(count(&report, "accepted"), 3000, "{report}");
    let late = count(&report, "late_requests");
    assert!(late > 0 && late < 3000, "{report}");
    assert_eq!(report["offered_rate_held"], false, "{report}");
}
