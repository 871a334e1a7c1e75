//! Operator hardening, against real nodes: stats behind an admin key (or loopback only),
//! no internal listener address on the public listener, `herald serve` refusing dev secrets
//! beyond loopback, and absurd numbers (token `exp`, `since`, `--ttl`) refused or answered
//! sanely instead of wrapping around.

mod common;

use std::io::Read;
use std::net::{IpAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::procs::{free_port, redis_cmd, shared_redis};
use common::*;
use herald::auth::TokenMinter;
use herald::ids::UserId;
use serde_json::{json, Value};

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml");

fn herald() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_herald"));
    c.env_remove("RUST_LOG")
        .env_remove("HERALD_INSECURE_DEV")
        .env("HERALD_SERVER__WORKERS", "1");
    c
}

/// Runs `herald serve` until it exits (or `WAIT` passes); its exit code and stderr.
fn serve_until_exit(cmd: &mut Command) -> (Option<i32>, String) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = stderr_of(&mut child);
    (status.and_then(|s| s.code()), err)
}

/// Everything the child wrote on its (piped) stderr.
fn stderr_of(child: &mut std::process::Child) -> String {
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

/// Starts `herald serve` on all interfaces at a free port, checks it answers `/healthz`,
/// stops it; returns its stderr.
async fn serve_on_all_interfaces(cmd: &mut Command) -> String {
    let port = free_port();
    let mut child = cmd
        .env("HERALD_SERVER__LISTEN", format!("0.0.0.0:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let deadline = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if let Some(status) = child.try_wait().unwrap() {
            let err = stderr_of(&mut child);
            panic!("herald exited with {status}: {err}");
        }
        assert!(
            Instant::now() < deadline,
            "herald did not listen on 0.0.0.0:{port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(http(&url, None, None).await.0, 200);
    let _ = child.kill();
    let _ = child.wait();
    stderr_of(&mut child)
}

#[actix_rt::test]
async fn stats_refuses_a_missing_or_wrong_admin_key_and_answers_the_right_one() {
    let node = start_node(&[]).await;
    let url = node.url("/api/v1/stats");
    let (s, v) = http(&url, None, None).await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (401, &json!("admin_key_missing")),
        "{v}"
    );
    let (s, v) = http(&url, None, Some(API_KEY)).await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (403, &json!("admin_key_invalid")),
        "{v}"
    );
    let (s, v) = node.stats().await;
    assert_eq!(s, 200, "{v}");
    assert!(v["counters"]["accepted"].is_u64(), "{v}");
}

/// A local address of this machine that is not loopback, if it has one.
fn non_loopback_ip() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9")
        .or_else(|_| s.connect("10.255.255.1:9"))
        .ok()?;
    Some(s.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

#[actix_rt::test]
async fn stats_without_admin_keys_answers_loopback_callers_only() {
    let cfg = config(&[("HERALD_AUTH__ADMIN_KEYS", "[]")]);
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _node = herald::server::start(cfg, listener).await.unwrap();
    let (s, v) = http(&format!("http://127.0.0.1:{port}/api/v1/stats"), None, None).await;
    assert_eq!(s, 200, "loopback caller: {v}");
    let Some(ip) = non_loopback_ip() else {
        eprintln!("no non-loopback address on this machine: remote half skipped");
        return;
    };
    let remote = format!("http://{ip}:{port}/api/v1/stats");
    let (s, v) = http(&remote, None, Some("any-key-at-all-123")).await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (403, &json!("stats_disabled")),
        "{v}"
    );
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("auth.admin_keys"));
}

#[actix_rt::test]
async fn no_public_endpoint_shows_the_internal_listener_address() {
    let (url, _redis) = shared_redis();
    let prefix = format!("op{}", std::process::id());
    let node = start_node(&[
        ("HERALD_NODE__ID", "op-a"),
        ("HERALD_ROUTES__BACKEND", "redis"),
        ("HERALD_ROUTES__REDIS_URL", &url),
        ("HERALD_ROUTES__KEY_PREFIX", &prefix),
        ("HERALD_CLUSTER__INTERNAL_LISTEN", "127.0.0.1:0"),
        (
            "HERALD_CLUSTER__SECRET",
            "operator-test-cluster-secret-0123456789",
        ),
    ])
    .await;
    let mut ws = node.connect("olga", "").await;
    ws.welcome().await;
    node.send("olga", json!("hi")).await;
    // The registry (Redis) is where peers learn the internal address.
    let key = format!("{prefix}:node:op-a");
    let mut internal = String::new();
    eventually("node registered", || {
        let (url, key) = (url.clone(), key.clone());
        async move {
            let reply = redis_cmd(&url, &["GET", &key]).await;
            reply.starts_with('$') && !reply.starts_with("$-1")
        }
    })
    .await;
    let reply = redis_cmd(&url, &["GET", &key]).await;
    let info: Value = serde_json::from_str(reply.split("\r\n").nth(1).unwrap()).unwrap();
    internal.push_str(info["internal"].as_str().unwrap());
    eventually("node sees itself as a peer", || async {
        let (_, v) = node.stats().await;
        v["peers"].as_array().is_some_and(|p| !p.is_empty())
    })
    .await;
    let (s, stats) = node.stats().await;
    assert_eq!(s, 200);
    let peers = stats["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1, "{stats}");
    assert_eq!(peers[0]["id"], "op-a");
    assert!(peers[0]["public"].is_string() && peers[0]["started_ms"].is_u64());
    assert!(peers[0].get("internal").is_none(), "{stats}");
    for path in [
        "/api/v1/stats",
        "/api/v1/users/olga/presence",
        "/api/v1/users/olga/messages",
        "/healthz",
        "/readyz",
        "/nowhere",
    ] {
        let key = if path.ends_with("stats") {
            ADMIN_KEY
        } else {
            API_KEY
        };
        let (_, body) = http_raw(&node.url(path), None, Some(key)).await;
        assert!(!body.contains(&internal), "{path} shows {internal}: {body}");
    }
}

#[actix_rt::test]
async fn serve_beyond_loopback_with_dev_secrets_exits_non_zero_naming_the_keys() {
    let (code, err) = serve_until_exit(
        herald()
            .args(["serve", "--config", CONFIG])
            .env("HERALD_SERVER__LISTEN", "0.0.0.0:0"),
    );
    assert_eq!(code, Some(2), "{err}");
    for needle in [
        "server.listen",
        "auth.jwt_secret",
        "auth.api_keys[0]",
        "auth.admin_keys[0]",
    ] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }
    assert!(err.contains("--insecure-dev"), "{err}");
    assert!(
        !err.contains("dev-secret-change-me-0123456789"),
        "leaks the secret: {err}"
    );
    // A weak replacement is refused as well.
    let (code, err) = serve_until_exit(
        herald()
            .args(["serve", "--config", CONFIG])
            .env("HERALD_SERVER__LISTEN", "0.0.0.0:0")
            .env("HERALD_AUTH__JWT_SECRET", "a".repeat(40)),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("`auth.jwt_secret` has fewer than 10 distinct"),
        "{err}"
    );
}

#[actix_rt::test]
async fn serve_beyond_loopback_starts_with_insecure_dev_or_strong_secrets() {
    let err =
        serve_on_all_interfaces(herald().args(["serve", "--config", CONFIG, "--insecure-dev"]))
            .await;
    assert!(err.contains("INSECURE"), "no loud warning: {err}");
    let err = serve_on_all_interfaces(
        herald()
            .args(["serve", "--config", CONFIG])
            .env("HERALD_INSECURE_DEV", "1"),
    )
    .await;
    assert!(err.contains("INSECURE"), "no loud warning: {err}");
    let err = serve_on_all_interfaces(
        herald()
            .args(["serve", "--config", CONFIG])
            .env(
                "HERALD_AUTH__JWT_SECRET",
                "Zq8vN3xK7pR2mW9tY4bC6hJ1fL5sD0gA",
            )
            .env("HERALD_AUTH__API_KEYS", "[\"Pk4Xw9Zr2Nq7Vt3Lm8\"]")
            .env("HERALD_AUTH__ADMIN_KEYS", "[\"Ad7Qe2Wx9Rt4Yu6Io1\"]"),
    )
    .await;
    assert!(
        !err.contains("INSECURE") && !err.contains("loopback only"),
        "{err}"
    );
}

#[actix_rt::test]
async fn config_with_leeway_over_five_minutes_is_refused_at_startup() {
    let (code, err) = serve_until_exit(
        herald()
            .args(["serve", "--config", CONFIG])
            .env("HERALD_SERVER__LISTEN", "127.0.0.1:0")
            .env("HERALD_AUTH__LEEWAY_S", "301"),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("auth.leeway_s"), "{err}");
}

#[actix_rt::test]
async fn token_expiring_at_u64_max_is_refused_at_upgrade_and_on_refresh() {
    let node = start_node(&[]).await;
    let minter = TokenMinter::from_config(&node.cfg.auth).unwrap();
    let absurd = minter.mint_until(&UserId::parse("max").unwrap(), None, u64::MAX);
    let refused = Ws::connect(&node.ws_url(&format!("token={absurd}")))
        .await
        .err()
        .expect("upgrade refused");
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.body["error"]["code"], "token_invalid",
        "{:?}",
        refused.body
    );
    let mut ws = node.connect("max", "").await;
    ws.welcome().await;
    ws.send_json(json!({"type": "ping", "token": absurd})).await;
    let e = ws.next_of_type("error").await;
    assert_eq!(e["code"], "token_invalid", "{e}");
}

#[actix_rt::test]
async fn since_beyond_the_last_seq_reads_nothing_and_ws_refuses_unstorable_seqs() {
    let node = start_node(&[]).await;
    node.send("sam", json!(1)).await;
    node.send("sam", json!(2)).await;
    for since in ["2", "9223372036854775807", "18446744073709551615"] {
        let (s, v) = node
            .get(&format!("/api/v1/users/sam/messages?since={since}"))
            .await;
        assert_eq!(s, 200, "since={since}: {v}");
        assert_eq!(v["messages"], json!([]), "since={since}: {v}");
        assert_eq!(v["last_seq"], 2);
    }
    let (s, v) = node
        .get("/api/v1/users/sam/messages?since=18446744073709551616")
        .await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (400, &json!("invalid_field")),
        "{v}"
    );
    let q = format!("token={}&since=18446744073709551615", node.token("sam", 60));
    let refused = Ws::connect(&node.ws_url(&q)).await.err().expect("refused");
    assert_eq!(refused.status, 400);
    assert_eq!(refused.body["error"]["code"], "invalid_since");
}

#[test]
fn token_command_refuses_overflowing_or_over_long_ttls() {
    let run = |ttl: &str| {
        herald()
            .args(["token", "tia", "--ttl", ttl, "--config", CONFIG])
            .output()
            .unwrap()
    };
    let out = run("99999999999999999d");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("too long"), "{err}");
    let out = run("31d");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auth.max_token_lifetime_s"), "{err}");
    assert!(run("30d").status.success());
}
