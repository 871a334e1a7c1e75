//! The JS client (`clients/js`, as each node serves it at `/client/herald.js`) in headless
//! Chromium against real `herald` processes: messages arrive in order; a node stopped
//! (SIGTERM, then kill -9) and started again on the same port while messages are posted
//! before, during and after leaves every accepted message shown exactly once, in seq order
//! (MongoDB store, so nothing accepted is lost across the restart); a short-lived token ends
//! with 4001 and the token callback is asked again; 50 clients facing a dead port back off
//! exponentially with full jitter (the spread is printed); a node frozen with SIGSTOP is
//! detected by the client's heartbeat and reconnected to after SIGCONT; the `/demo` page
//! connects and lists messages. The browser runs `tests/browser/client_driver.cjs`
//! (playwright-core on Debian's chromium), which keeps the page logic.

mod common;
#[path = "js_client/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use common::procs::{free_port, shared_mongo, token, HeraldProc};
use harness::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(20);

#[actix_rt::test]
async fn messages_posted_to_a_node_reach_the_page_in_order() {
    let node = HeraldProc::start("jsc-basic", &[]);
    let mut b = Browser::open(&node.base(), "/demo").await;
    let start = json!({"cmd": "start", "id": "a", "token": token("jsc-ann"), "url": "/ws",
                       "device": "tab"});
    b.ask(start).await;
    let c = b.until("a", LIMIT, is_open).await;
    assert_eq!(states(&c).len(), 2, "connecting, open: {c:#}");
    let mut ledger = Ledger::new("jsc-ann");
    ledger.post(node.port, 20).await;
    assert_eq!(ledger.accepted.len(), 20);
    let c = b.until("a", LIMIT, |c| ledger.all_shown(c)).await;
    ledger.check(&c);
    let seqs: Vec<u64> = messages(&c).map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
    assert!(messages(&c).all(|m| m["topic"] == "t"));
    assert_eq!(c["errors"], json!([]), "{c:#}");
    b.quit().await;
}

/// How a node is stopped before it is started again.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    /// SIGTERM: the node drains (its sessions are asked to reconnect) and exits 0.
    Drain,
    /// kill -9: sockets drop without a close frame (1006).
    Kill,
}

/// Restarts `node` on its port after stopping it, posting before, while it stops, while it
/// is down and after; the page client must end with every accepted message exactly once.
async fn restart_round(
    b: &mut Browser,
    node: &mut HeraldProc,
    env: &[(String, String)],
    ledger: &mut Ledger,
    stop: Stop,
) {
    ledger.post(node.port, 5).await;
    let c = b.until("r", LIMIT, |c| ledger.all_shown(c)).await;
    ledger.check(&c);
    let before = states(&c).len();
    ledger.post(node.port, 3).await; // accepted, maybe not pushed yet when the node stops
    match stop {
        Stop::Drain => {
            node.signal("TERM");
            ledger.post(node.port, 3).await; // racing the drain: accepted or refused
            assert_eq!(node.terminate(), Some(0), "a drained node exits 0");
        }
        Stop::Kill => node.kill9(),
    }
    let accepted = ledger.accepted.len();
    ledger.post(node.port, 3).await;
    assert_eq!(
        ledger.accepted.len(),
        accepted,
        "nothing listens: all refused"
    );
    *node = HeraldProc::start_on(&node.name, env, node.port);
    wait_ready(node).await;
    ledger.post(node.port, 5).await;
    let c = b
        .until("r", LIMIT, |c| is_open(c) && ledger.all_shown(c))
        .await;
    ledger.check(&c);
    let lost = &states(&c)[before];
    assert_eq!(lost["state"], "reconnecting", "{c:#}");
    if stop == Stop::Drain {
        // The node asked its clients to come back: not counted as a failure.
        let code = lost["closeCode"].as_u64().unwrap();
        assert!(code == 1012 || code == 1001, "{lost}");
        assert_eq!(lost["attempt"], 0, "{lost}");
    } else {
        assert_eq!(lost["closeCode"], 1006, "{lost}");
    }
    eprintln!(
        "restart ({stop:?}): {} accepted, {} unanswered, {} shown; states {}",
        ledger.accepted.len(),
        ledger.unknown.len(),
        numbers(&c).len(),
        states(&c)[before..]
            .iter()
            .map(|s| format!("{}/{}/{}", s["state"], s["closeCode"], s["attempt"]))
            .collect::<Vec<_>>()
            .join(" ")
    );
}

#[actix_rt::test]
async fn a_restarted_node_loses_and_repeats_nothing_the_page_was_sent() {
    let (mongo, _mp) = shared_mongo();
    let db = format!("t{}_jsclient", std::process::id());
    let env: Vec<(String, String)> = [
        ("HERALD_STORE__BACKEND", "mongo"),
        ("HERALD_STORE__MONGO__URL", mongo.as_str()),
        ("HERALD_STORE__MONGO__DATABASE", db.as_str()),
        ("HERALD_STORE__MONGO__OP_TIMEOUT_MS", "1500"),
        ("HERALD_SERVER__SHUTDOWN_TIMEOUT_S", "3"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut node = HeraldProc::start("jsc-restart", &env);
    wait_ready(&node).await;
    let mut b = Browser::open(&node.base(), "/demo").await;
    let options = json!({"backoffBaseMs": 100, "backoffMaxMs": 1000, "connectTimeoutMs": 3000});
    b.ask(
        json!({"cmd": "start", "id": "r", "token": token("jsc-rita"), "url": "/ws",
                 "device": "tab", "options": options}),
    )
    .await;
    b.until("r", LIMIT, is_open).await;
    let mut ledger = Ledger::new("jsc-rita");
    restart_round(&mut b, &mut node, &env, &mut ledger, Stop::Drain).await;
    restart_round(&mut b, &mut node, &env, &mut ledger, Stop::Kill).await;
    let c = b.until("r", LIMIT, is_open).await;
    assert_eq!(c["errors"], json!([]), "{c:#}");
    b.quit().await;
}

#[actix_rt::test]
async fn an_expired_token_closes_with_4001_and_the_callback_gives_the_next() {
    // No leeway and a check every 500 ms: the 3 s token ends the session 3-4.5 s after minting.
    let env = [
        ("HERALD_AUTH__LEEWAY_S".to_string(), "0".to_string()),
        (
            "HERALD_SESSION__HEARTBEAT_MS".to_string(),
            "1000".to_string(),
        ),
    ];
    let node = HeraldProc::start("jsc-token", &env);
    let mut b = Browser::open(&node.base(), "/demo").await;
    let tokens = [short_token("jsc-tom", 3), token("jsc-tom")];
    b.ask(
        json!({"cmd": "start", "id": "t", "tokens": tokens, "url": "/ws",
                 "options": {"backoffBaseMs": 100}}),
    )
    .await;
    b.until("t", LIMIT, is_open).await;
    let mut ledger = Ledger::new("jsc-tom");
    ledger.post(node.port, 2).await;
    let expired = |c: &Value| states(c).iter().any(|s| s["closeCode"] == 4001);
    let c = b.until("t", LIMIT, |c| expired(c) && is_open(c)).await;
    assert_eq!(
        c["tokenCalls"], 2,
        "asked once, then once after 4001: {c:#}"
    );
    ledger.post(node.port, 3).await;
    let c = b.until("t", LIMIT, |c| ledger.all_shown(c)).await;
    ledger.check(&c);
    assert_eq!(numbers(&c), [0, 1, 2, 3, 4]);
    assert_eq!(c["tokenCalls"], 2, "{c:#}");
    assert_eq!(
        c["errors"],
        json!([]),
        "a refreshed token is no error: {c:#}"
    );
    b.quit().await;
}

#[actix_rt::test]
async fn fifty_clients_facing_a_dead_port_back_off_exponentially_with_full_jitter() {
    // Caps 250, 500, 1000, 2000 and 2000 ms: the fifth retry shows the cap at backoffMaxMs.
    // Chromium itself delays a renderer's WebSocket connects by 1-5 s once most recent ones
    // failed (its per-process throttle), so a round of 50 failing attempts takes up to ~5 s
    // whatever the client's delays; those measured here are the client's own.
    const CLIENTS: usize = 50;
    const ATTEMPTS: usize = 5;
    let (base_ms, max_ms) = (250.0, 2000.0);
    let node = HeraldProc::start("jsc-backoff", &[]);
    // The demo page's CSP lets it connect to its own node only.
    let mut b = Browser::open_without_csp(&node.base(), "/demo").await;
    let dead = format!("ws://127.0.0.1:{}/ws", free_port());
    b.ask(
        json!({"cmd": "start", "id": "b", "count": CLIENTS, "token": token("jsc-bo"),
                 "url": dead, "options": {"backoffBaseMs": base_ms, "backoffMaxMs": max_ms}}),
    )
    .await;
    let retries = |c: &Value| -> Vec<Value> {
        let s = states(c).iter().filter(|s| s["state"] == "reconnecting");
        s.cloned().collect()
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(90);
    let clients = loop {
        let clients = b.clients("b").await;
        if clients.values().all(|c| retries(c).len() >= ATTEMPTS) {
            break clients;
        }
        assert!(
            Instant::now() < deadline,
            "not every client retried {ATTEMPTS} times"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    b.ask(json!({"cmd": "stop", "prefix": "b"})).await;
    assert_eq!(clients.len(), CLIENTS);
    eprintln!(
        "{CLIENTS} clients retried {ATTEMPTS} times in {:?}",
        started.elapsed()
    );
    let mut medians = Vec::new();
    eprintln!("attempt  cap ms  min  median  max  distinct (of {CLIENTS} clients)");
    for k in 1..=ATTEMPTS {
        let uncapped = base_ms * 2f64.powi(k as i32 - 1);
        let cap = f64::min(max_ms, uncapped);
        let mut d: Vec<f64> = clients
            .values()
            .map(|c| {
                let r = &retries(c)[k - 1];
                assert_eq!(r["attempt"], k, "{r}");
                assert_eq!(r["closeCode"], 1006, "{r}");
                r["delayMs"].as_f64().unwrap()
            })
            .collect();
        d.sort_by(f64::total_cmp);
        let (min, max) = (d[0], d[CLIENTS - 1]);
        let median = (d[CLIENTS / 2 - 1] + d[CLIENTS / 2]) / 2.0;
        let distinct = d.windows(2).filter(|w| w[0] != w[1]).count() + 1;
        eprintln!("{k:>7}  {cap:>6}  {min:>3}  {median:>6}  {max:>4}  {distinct:>8}");
        assert!(
            min >= 0.0 && max < cap,
            "attempt {k}: delays in [0, {cap}): {d:?}"
        );
        assert!(
            max - min >= 0.5 * cap,
            "attempt {k}: spread over [0, {cap}): {d:?}"
        );
        assert!(
            distinct >= 10,
            "attempt {k}: the clients retry in step: {d:?}"
        );
        if uncapped <= max_ms {
            medians.push(median);
        }
    }
    assert_eq!(medians.len(), 4);
    assert!(
        medians.windows(2).all(|m| m[0] < m[1]),
        "the median grows with the cap: {medians:?}"
    );
    b.quit().await;
}

#[actix_rt::test]
async fn a_frozen_node_is_detected_by_the_heartbeat_and_reconnected_after_it_resumes() {
    let (ping_ms, timeout_ms) = (300, 1000);
    let node = HeraldProc::start("jsc-frozen", &[]);
    let mut b = Browser::open(&node.base(), "/demo").await;
    let options = json!({"pingIntervalMs": ping_ms, "heartbeatTimeoutMs": timeout_ms,
                         "connectTimeoutMs": 1500, "backoffBaseMs": 100, "backoffMaxMs": 500});
    b.ask(
        json!({"cmd": "start", "id": "f", "token": token("jsc-fay"), "url": "/ws",
                 "options": options}),
    )
    .await;
    b.until("f", LIMIT, is_open).await;
    let mut ledger = Ledger::new("jsc-fay");
    ledger.post(node.port, 2).await;
    let c = b.until("f", LIMIT, |c| ledger.all_shown(c)).await;
    let before = states(&c).len();

    node.signal("STOP");
    let stopped = Instant::now();
    let dead = |c: &Value| {
        states(c)[before..]
            .iter()
            .any(|s| s["state"] == "reconnecting" && s["closeCode"].is_null())
    };
    let c = b.until("f", LIMIT, dead).await;
    let detected = stopped.elapsed();
    let lost = &states(&c)[before];
    assert!(
        lost["reason"]
            .as_str()
            .unwrap()
            .contains("heartbeatTimeoutMs"),
        "{lost}"
    );
    let bound = Duration::from_millis(ping_ms + timeout_ms + 3000);
    assert!(
        detected < bound,
        "detected after {detected:?}, bound {bound:?}"
    );
    eprintln!("frozen node detected {detected:?} after SIGSTOP (ping {ping_ms} ms, timeout {timeout_ms} ms)");
    // Attempts against the frozen node get no welcome and are given up too.
    let gave_up = |c: &Value| {
        let reason = |s: &Value| {
            s["reason"]
                .as_str()
                .unwrap_or("")
                .contains("connectTimeoutMs")
        };
        states(c)[before..].iter().any(reason)
    };
    b.until("f", LIMIT, gave_up).await;

    node.signal("CONT");
    let resumed = Instant::now();
    let c = b.until("f", LIMIT, is_open).await;
    eprintln!("reconnected {:?} after SIGCONT", resumed.elapsed());
    assert!(states(&c)[before..].iter().any(|s| s["state"] == "open"));
    ledger.post(node.port, 2).await;
    let c = b.until("f", LIMIT, |c| ledger.all_shown(c)).await;
    ledger.check(&c);
    assert_eq!(numbers(&c), [0, 1, 2, 3]);
    b.quit().await;
}

#[actix_rt::test]
async fn the_demo_page_connects_from_a_link_and_lists_messages_as_text() {
    let node = HeraldProc::start("jsc-demo", &[]);
    let link = format!("/demo#token={}&device=demo-tab", token("jsc-dee"));
    let mut b = Browser::open(&node.base(), &link).await;
    let fields = json!({"state": "#state", "node": "#node", "session": "#session",
                        "user": "#user", "messages": "#messages", "reconnects": "#reconnects",
                        "errors": "#errors", "token": "#token", "device": "#device"});
    let read = json!({"cmd": "text", "selectors": fields});
    b.ask(json!({"cmd": "click", "selector": "#connect"})).await;
    let deadline = Instant::now() + LIMIT;
    while b.ask(read.clone()).await["text"]["state"] != "open" {
        assert!(Instant::now() < deadline, "the demo page did not connect");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for n in 1..=3 {
        let body = json!({"to": "jsc-dee", "topic": "greeting",
                          "payload": {"text": format!("<b>hi</b> {n}")}});
        let (s, v) = node.post("/api/v1/messages", &body.to_string()).await;
        assert_eq!(s, 202, "{v}");
    }
    let page = loop {
        let page = b.ask(read.clone()).await;
        if page["text"]["messages"] == "3" {
            break page;
        }
        assert!(Instant::now() < deadline, "the demo page shows {page:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let t = &page["text"];
    assert_eq!(t["node"], "jsc-demo", "{page:#}");
    assert!(t["session"].as_str().unwrap().starts_with('s'), "{page:#}");
    assert_eq!(t["user"], "jsc-dee", "{page:#}");
    assert_eq!(t["errors"], "0", "{page:#}");
    assert_eq!(
        t["device"], "demo-tab",
        "prefilled from the fragment: {page:#}"
    );
    let rows = page["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{page:#}");
    assert_eq!(rows[0][0], "3", "newest first: {page:#}");
    assert_eq!(rows[0][1], "greeting");
    assert_eq!(
        rows[0][2], r#"{"text":"<b>hi</b> 3"}"#,
        "payload shown as text"
    );
    assert_eq!(
        page["problems"],
        json!([]),
        "no console errors or CSP refusals"
    );
    b.ask(json!({"cmd": "click", "selector": "#disconnect"}))
        .await;
    b.quit().await;
}
