//! `auth.mode = "http"`: connection tokens judged by the business's own auth endpoint (a
//! real HTTP server in the test, counting its calls): accept, refuse, down, slow, a connect
//! storm of one token, the breaker, the cache's expiry, refreshes on ping, the endpoint's
//! per-connection limit, and `herald auth check`.

mod common;

use std::time::{Duration, Instant};

use common::auth_endpoint::{Behaviour, Endpoint};
use common::*;
use serde_json::json;

async fn node_for(ep: &Endpoint, extra: &[(&str, &str)]) -> TestNode {
    let env = ep.node_env();
    let mut overrides: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    overrides.extend_from_slice(extra);
    start_node(&overrides).await
}

async fn refused(node: &TestNode, query: &str) -> (u16, String) {
    let r = Ws::connect(&node.ws_url(query))
        .await
        .err()
        .expect("connection must be refused");
    (
        r.status,
        r.body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

async fn sessions(node: &TestNode) -> u64 {
    let (_, stats) = http(&node.url("/api/v1/stats"), None, Some(ADMIN_KEY)).await;
    stats["hub"]["sessions"].as_u64().unwrap_or(u64::MAX)
}

#[actix_rt::test]
async fn an_accepted_token_opens_a_session_for_the_user_the_endpoint_names() {
    let ep = Endpoint::start();
    let node = node_for(&ep, &[]).await;
    let mut ws = Ws::connect(&node.ws_url("token=ok-alice&device=phone&since=0"))
        .await
        .expect("accepted");
    assert_eq!(ws.welcome().await["user"], "alice");
    assert_eq!(ep.calls(), 1);
    let call = ep.last_call.lock().unwrap().clone();
    assert_eq!(call["token"], "ok-alice");
    assert_eq!(call["device"], "phone");
    assert_eq!(call["since"], 0);
    assert_eq!(call["purpose"], "connect");
    assert_eq!(call["remote_addr"], "127.0.0.1");
    // A token the endpoint binds to a device cannot open another device.
    let (status, code) = refused(&node, "token=ok-bound1&device=phone").await;
    assert_eq!((status, code.as_str()), (401, "token_invalid"));
}

#[actix_rt::test]
async fn a_refused_token_is_a_401_before_the_upgrade() {
    let ep = Endpoint::start();
    ep.set(Behaviour::Refuse);
    let node = node_for(&ep, &[]).await;
    let (status, code) = refused(&node, "token=ok-mallory").await;
    assert_eq!((status, code.as_str()), (401, "token_invalid"));
    let (status, _) = refused(&node, "token=").await;
    assert_eq!(status, 401, "an empty token never reaches the endpoint");
    assert_eq!(ep.calls(), 1);
    assert_eq!(sessions(&node).await, 0);
}

#[actix_rt::test]
async fn an_unreachable_endpoint_is_a_503_and_never_an_accept() {
    let port = procs::free_port();
    let url = format!("http://127.0.0.1:{port}/auth");
    let node = start_node(&[
        ("HERALD_AUTH__MODE", "http"),
        ("HERALD_AUTH__HTTP__URL", &url),
    ])
    .await;
    let (status, code) = refused(&node, "token=ok-alice").await;
    assert_eq!((status, code.as_str()), (503, "auth_unavailable"));
    assert_eq!(sessions(&node).await, 0);
    let (_, stats) = http(&node.url("/api/v1/stats"), None, Some(ADMIN_KEY)).await;
    assert_eq!(stats["counters"]["auth_unavailable"], 1);
}

#[actix_rt::test]
async fn a_slow_endpoint_times_out_within_the_configured_bound() {
    let ep = Endpoint::start();
    ep.set(Behaviour::Slow(Duration::from_secs(5)));
    let node = node_for(&ep, &[("HERALD_AUTH__HTTP__TIMEOUT_MS", "300")]).await;
    let started = Instant::now();
    let (status, code) = refused(&node, "token=ok-alice").await;
    let took = started.elapsed();
    assert_eq!((status, code.as_str()), (503, "auth_unavailable"));
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(
        took < Duration::from_secs(3),
        "the 300 ms budget held: {took:?}"
    );
}

#[actix_rt::test]
async fn a_connect_storm_of_one_token_makes_a_handful_of_calls() {
    let ep = Endpoint::start();
    ep.set(Behaviour::Slow(Duration::from_millis(200)));
    let node = node_for(&ep, &[("HERALD_SESSION__MAX_PER_USER", "1000")]).await;
    let url = node.ws_url("token=ok-storm");
    let connects = (0..500).map(|_| {
        let url = url.clone();
        async move { Ws::connect(&url).await.is_ok() }
    });
    let results = futures_util::future::join_all(connects).await;
    let opened = results.iter().filter(|ok| **ok).count();
    assert_eq!(opened, 500, "every connect of the storm is accepted");
    assert!(
        ep.calls() <= 3,
        "500 connects made {} endpoint calls",
        ep.calls()
    );
    let (_, stats) = http(&node.url("/api/v1/stats"), None, Some(ADMIN_KEY)).await;
    let shared = stats["counters"]["auth_coalesced"].as_u64().unwrap()
        + stats["counters"]["auth_cache_hits"].as_u64().unwrap();
    assert!(shared >= 497, "{stats}");
}

#[actix_rt::test]
async fn the_breaker_opens_on_failures_fails_fast_and_recovers() {
    let ep = Endpoint::start();
    ep.set(Behaviour::Fail);
    let node = node_for(
        &ep,
        &[
            ("HERALD_AUTH__HTTP__BREAKER_FAILURES", "3"),
            ("HERALD_AUTH__HTTP__BREAKER_OPEN_MS", "500"),
        ],
    )
    .await;
    for i in 0..3 {
        let (status, _) = refused(&node, &format!("token=ok-b{i}")).await;
        assert_eq!(status, 503);
    }
    assert_eq!(ep.calls(), 3);
    for i in 3..10 {
        let (status, code) = refused(&node, &format!("token=ok-b{i}")).await;
        assert_eq!((status, code.as_str()), (503, "auth_unavailable"));
    }
    assert_eq!(ep.calls(), 3, "an open breaker does not call the endpoint");
    let (_, stats) = http(&node.url("/api/v1/stats"), None, Some(ADMIN_KEY)).await;
    assert_eq!(stats["counters"]["auth_breaker_open"], 1);
    assert_eq!(stats["counters"]["auth_breaker_rejected"], 7);
    ep.set(Behaviour::Accept);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut ws = Ws::connect(&node.ws_url("token=ok-probe"))
        .await
        .expect("the probe goes through");
    assert_eq!(ws.welcome().await["user"], "probe");
    let mut ws = Ws::connect(&node.ws_url("token=ok-after"))
        .await
        .expect("closed again");
    assert_eq!(ws.welcome().await["user"], "after");
    assert_eq!(ep.calls(), 5);
    let (_, stats) = http(&node.url("/api/v1/stats"), None, Some(ADMIN_KEY)).await;
    assert_eq!(stats["counters"]["auth_breaker_open"], 0);
}

#[actix_rt::test]
async fn the_cache_expires_with_the_token() {
    let ep = Endpoint::start();
    ep.ttl_s.store(2, std::sync::atomic::Ordering::SeqCst);
    let node = node_for(&ep, &[]).await;
    let url = node.ws_url("token=ok-cached");
    Ws::connect(&url).await.expect("first").welcome().await;
    Ws::connect(&url).await.expect("second").welcome().await;
    assert_eq!(
        ep.calls(),
        1,
        "the second connect is answered from the cache"
    );
    eventually("the cached token expires", || {
        let url = url.clone();
        let ep = ep.clone();
        async move {
            let _ = Ws::connect(&url).await;
            ep.calls() == 2
        }
    })
    .await;
}

#[actix_rt::test]
async fn a_ping_with_a_token_is_reverified_by_the_endpoint() {
    let ep = Endpoint::start();
    let node = node_for(&ep, &[]).await;
    let mut ws = Ws::connect(&node.ws_url("token=ok-pinger")).await.unwrap();
    ws.welcome().await;
    ws.send_json(json!({"type": "ping", "token": "ok-pinger-2"}))
        .await;
    let reply = ws.next_json().await;
    let reply = if reply["type"] == "pong" {
        ws.next_json().await
    } else {
        reply
    };
    assert_eq!(reply["code"], "token_user_mismatch", "{reply}");
    assert_eq!(ep.last_call.lock().unwrap()["purpose"], "refresh");
    ep.set(Behaviour::Refuse);
    ws.send_json(json!({"type": "ping", "token": "ok-pinger-3"}))
        .await;
    let mut codes = Vec::new();
    for _ in 0..2 {
        codes.push(ws.next_json().await);
    }
    assert!(
        codes.iter().any(|f| f["code"] == "token_invalid"),
        "{codes:?}"
    );
    assert_eq!(ep.calls(), 3);
}

#[actix_rt::test]
async fn the_endpoint_can_cap_a_users_sessions() {
    let ep = Endpoint::start();
    let node = node_for(&ep, &[]).await;
    let mut first = Ws::connect(&node.ws_url("token=ok-solo&device=a"))
        .await
        .unwrap();
    first.welcome().await;
    let (status, code) = refused(&node, "token=ok-solo&device=b").await;
    assert_eq!((status, code.as_str()), (429, "too_many_sessions"));
}

fn auth_check(env: Vec<(&'static str, String)>, token: &str) -> (i32, serde_json::Value) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["auth", "check", "--token", token, "--config"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"))
        .envs(env)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), v)
}

/// `auth_check` off the test's thread (the endpoint answers on the test's actix system).
async fn check(env: Vec<(&'static str, String)>, token: &'static str) -> (i32, serde_json::Value) {
    actix_rt::task::spawn_blocking(move || auth_check(env, token))
        .await
        .unwrap()
}

#[actix_rt::test]
async fn auth_check_runs_a_token_through_the_configured_mode() {
    let ep = Endpoint::start();
    let (code, v) = check(ep.node_env(), "ok-carol").await;
    assert_eq!(
        (code, v["verdict"].as_str(), v["user"].as_str()),
        (0, Some("accepted"), Some("carol")),
        "{v}"
    );
    ep.set(Behaviour::Refuse);
    let (code, v) = check(ep.node_env(), "ok-carol").await;
    assert_eq!((code, v["verdict"].as_str()), (1, Some("refused")), "{v}");
    let down = format!("http://127.0.0.1:{}/auth", procs::free_port());
    let env = vec![
        ("HERALD_AUTH__MODE", "http".to_string()),
        ("HERALD_AUTH__HTTP__URL", down),
    ];
    let (code, v) = check(env, "ok-x").await;
    assert_eq!(
        (code, v["code"].as_str()),
        (3, Some("auth_unavailable")),
        "{v}"
    );
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")).unwrap();
    let shipped = herald::config::Config::from_sources(&shipped, &Default::default()).unwrap();
    let jwt: &'static str = Box::leak(token_for(&shipped, "dave", None, 60).into_boxed_str());
    let (code, v) = check(Vec::new(), jwt).await;
    assert_eq!(
        (code, v["mode"].as_str(), v["user"].as_str()),
        (0, Some("jwt"), Some("dave")),
        "{v}"
    );
}

/// The auth endpoint of the README, as written there.
fn readme_endpoint() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("// auth-endpoint.mjs")
        .expect("the README shows the example endpoint");
    let len = readme[start..].find("```").unwrap();
    readme[start..start + len].to_string()
}

#[actix_rt::test]
async fn the_readme_example_endpoint_lets_opaque_session_tokens_connect() {
    let dir = std::env::temp_dir().join(format!("herald-readme-ep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("auth-endpoint.mjs");
    std::fs::write(&script, readme_endpoint()).unwrap();
    let port = procs::free_port();
    let mut endpoint = std::process::Command::new("node")
        .arg(&script)
        .env("PORT", port.to_string())
        .env("HERALD_AUTH_SECRET", "readme-secret-42")
        .spawn()
        .expect("node is installed (./scripts/test.sh installs it)");
    eventually("the example endpoint listens", || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    let url = format!("http://127.0.0.1:{port}/");
    let node = start_node(&[
        ("HERALD_AUTH__MODE", "http"),
        ("HERALD_AUTH__HTTP__URL", &url),
        ("HERALD_AUTH__HTTP__HEADER", "X-Herald-Secret"),
        ("HERALD_AUTH__HTTP__SECRET", "readme-secret-42"),
    ])
    .await;
    let mut ws = Ws::connect(&node.ws_url("token=s3cr3t-session-of-alice"))
        .await
        .expect("the README's session token connects");
    assert_eq!(ws.welcome().await["user"], "alice");
    let (status, code) = refused(&node, "token=someone-elses-guess").await;
    assert_eq!((status, code.as_str()), (401, "token_invalid"));
    let _ = endpoint.kill();
    let _ = endpoint.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
