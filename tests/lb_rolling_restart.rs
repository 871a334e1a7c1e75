//! The local cluster of `scripts/cluster.sh` (three `herald` nodes, redis-server,
//! secantusd-rs, Debian haproxy on one public port), restarted node by node under load:
//! 1 000 WebSocket clients connect only through haproxy, a producer posts through haproxy
//! at a steady rate, and every node in turn gets SIGTERM (a spread drain) and starts again.
//! Every client must reconnect and end with every message that got a 2xx for its user
//! exactly once after dedupe, never a seq twice or out of order within a session; and
//! haproxy's log must show no request to an internal listener.
//!
//! It prints the reconnect time p50/p99 and the duplicates the clients dropped, and writes
//! them to `target/tmp/lb-rolling-restart.json`. `HERALD_LB_CLIENTS` sets the client count.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::lb::{percentile, Cluster};
use common::Rng;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Messages posted per second, in all.
const RATE: u64 = 100;
const PRODUCERS: u64 = 4;

/// What one client saw, across its connections.
#[derive(Default)]
struct ClientLog {
    /// Message ids handled, in order (after dedupe by seq).
    ids: Vec<String>,
    last_seq: u64,
    /// Frames at or below the last handled seq, dropped by the dedupe.
    duplicates: u64,
    /// A seq at or below the previous one inside one session: a broken promise.
    violations: Vec<String>,
    welcomes: u64,
    /// From a connection's end to the next welcome.
    reconnects: Vec<Duration>,
}

type Logs = Vec<Rc<RefCell<ClientLog>>>;

/// Keeps one device of `user` connected through haproxy, resuming from its last seq and
/// waiting the jitter a drain's `reconnect` frame asks for.
async fn client(
    cluster: Rc<Cluster>,
    user: String,
    stop: Rc<Cell<bool>>,
    log: Rc<RefCell<ClientLog>>,
    mut rng: Rng,
) {
    let token = cluster.token(&user);
    let mut ended: Option<Instant> = None;
    while !stop.get() {
        let since = log.borrow().last_seq;
        let url = format!("{}?token={token}&device=d&since={since}", cluster.ws_url());
        let Ok(Ok((mut ws, _))) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(url),
        )
        .await
        else {
            tokio::time::sleep(Duration::from_millis(100 + rng.below(200) as u64)).await;
            continue;
        };
        let mut jitter_ms = 0u64;
        let mut session_last = 0u64;
        while let Some(Ok(frame)) = ws.next().await {
            let Message::Text(text) = frame else {
                if frame.is_close() {
                    break;
                }
                continue;
            };
            let v: Value = serde_json::from_str(&text).unwrap();
            let mut l = log.borrow_mut();
            match v["type"].as_str() {
                Some("welcome") => {
                    l.welcomes += 1;
                    if let Some(t) = ended.take() {
                        l.reconnects.push(t.elapsed());
                    }
                }
                Some("reconnect") => jitter_ms = v["jitter_ms"].as_u64().unwrap_or(0),
                Some("message") if !v["seq"].is_null() => {
                    let seq = v["seq"].as_u64().unwrap();
                    if seq <= session_last {
                        l.violations.push(format!(
                            "{user}: seq {seq} after {session_last} in one session"
                        ));
                    }
                    session_last = session_last.max(seq);
                    if seq <= l.last_seq {
                        l.duplicates += 1;
                        continue;
                    }
                    l.last_seq = seq;
                    l.ids.push(v["id"].as_str().unwrap().to_string());
                }
                _ => {}
            }
        }
        ended.get_or_insert_with(Instant::now);
        let wait = if jitter_ms > 0 {
            rng.below(jitter_ms as usize + 1) as u64
        } else {
            100 + rng.below(200) as u64
        };
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

/// Posts to users round-robin through haproxy at `RATE / PRODUCERS` per second until
/// stopped; records the ids that got a 2xx, per user.
async fn producer(
    cluster: Rc<Cluster>,
    users: usize,
    first: u64,
    stop: Rc<Cell<bool>>,
    accepted: Rc<RefCell<BTreeMap<String, BTreeSet<String>>>>,
    refused: Rc<Cell<u64>>,
) {
    let interval = Duration::from_micros(1_000_000 * PRODUCERS / RATE);
    let mut tick = tokio::time::interval(interval);
    let mut k = first;
    while !stop.get() {
        tick.tick().await;
        let user = format!("lb{}", k as usize % users);
        let body = json!({"to": user, "payload": {"k": k}}).to_string();
        k += PRODUCERS;
        match cluster.post("/api/v1/messages", &body).await {
            Some((202, v)) => {
                let id = v["id"].as_str().unwrap().to_string();
                accepted.borrow_mut().entry(user).or_default().insert(id);
            }
            _ => refused.set(refused.get() + 1),
        }
    }
}

fn complete(logs: &Logs, users: &[String], accepted: &BTreeMap<String, BTreeSet<String>>) -> bool {
    users.iter().zip(logs).all(|(u, l)| {
        let want = accepted.get(u).map_or(0, BTreeSet::len);
        l.borrow().ids.len() >= want
    })
}

fn report_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp/lb-rolling-restart.json")
}

#[actix_rt::test]
async fn clients_behind_haproxy_lose_nothing_while_every_node_restarts_in_turn() {
    let clients: usize = std::env::var("HERALD_LB_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let cluster = Rc::new(Cluster::up("lb-rolling"));
    let stop = Rc::new(Cell::new(false));
    let users: Vec<String> = (0..clients).map(|i| format!("lb{i}")).collect();
    let logs: Logs = users.iter().map(|_| Rc::default()).collect();
    let mut rng = Rng::new(0x1b_2024);
    let mut tasks = Vec::new();
    for (i, (user, log)) in users.iter().zip(&logs).enumerate() {
        let task = client(
            cluster.clone(),
            user.clone(),
            stop.clone(),
            log.clone(),
            Rng::new(rng.next()),
        );
        tasks.push(actix_rt::spawn(task));
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while logs.iter().any(|l| l.borrow().welcomes == 0) {
        assert!(
            Instant::now() < deadline,
            "not every client connected through haproxy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let accepted = Rc::new(RefCell::new(BTreeMap::new()));
    let refused = Rc::new(Cell::new(0));
    let producing = Rc::new(Cell::new(false));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            actix_rt::spawn(producer(
                cluster.clone(),
                clients,
                p,
                producing.clone(),
                accepted.clone(),
                refused.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    for node in ["node1", "node2", "node3"] {
        cluster.restart(node).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let restarts_took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    producing.set(true);
    for p in producers {
        p.await.unwrap();
    }
    let accepted = accepted.borrow().clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !complete(&logs, &users, &accepted) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let late duplicates show up before counting them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.set(true);

    let mut lost = Vec::new();
    let mut extra = Vec::new();
    let mut violations = Vec::new();
    let mut reconnects = Vec::new();
    let (mut duplicates, mut never_reconnected) = (0, 0);
    for (user, log) in users.iter().zip(&logs) {
        let l = log.borrow();
        let got: BTreeSet<&String> = l.ids.iter().collect();
        assert_eq!(
            got.len(),
            l.ids.len(),
            "{user}: a message handled twice after dedupe"
        );
        let want = accepted.get(user).cloned().unwrap_or_default();
        lost.extend(
            want.iter()
                .filter(|id| !got.contains(id))
                .map(|id| format!("{user}:{id}")),
        );
        extra.extend(
            got.iter()
                .filter(|id| !want.contains(**id))
                .map(|id| format!("{user}:{id}")),
        );
        violations.extend(l.violations.iter().cloned());
        duplicates += l.duplicates;
        reconnects.extend(l.reconnects.iter().copied());
        if l.welcomes < 2 {
            never_reconnected += 1;
        }
    }
    let messages: usize = accepted.values().map(BTreeSet::len).sum();
    reconnects.sort();
    let (p50, p99) = (percentile(&reconnects, 50), percentile(&reconnects, 99));
    let report = json!({
        "clients": clients,
        "messages_accepted": messages,
        "posts_refused": refused.get(),
        "lost": lost.len(),
        "duplicates_before_dedupe": duplicates,
        "reconnects": reconnects.len(),
        "reconnect_p50_ms": p50.as_millis() as u64,
        "reconnect_p99_ms": p99.as_millis() as u64,
        "restarts_took_ms": restarts_took.as_millis() as u64,
    });
    eprintln!("rolling restart through haproxy: {report}");
    let _ = std::fs::create_dir_all(report_path().parent().unwrap());
    std::fs::write(report_path(), report.to_string()).unwrap();

    assert!(
        messages >= 500,
        "the producer got too few 2xx ({messages}) to test anything"
    );
    assert!(
        lost.is_empty(),
        "{} messages lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        extra.is_empty(),
        "messages never accepted arrived: {:?}",
        &extra[..extra.len().min(5)]
    );
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(
        never_reconnected, 0,
        "every client's node restarted: each must have reconnected"
    );
    let internal = cluster.internal_requests_in_haproxy_log();
    assert!(
        internal.is_empty(),
        "haproxy passed requests to internal listeners: {internal:?}"
    );
    assert!(
        cluster.haproxy_log().contains("\"GET /ws\""),
        "haproxy logged the upgrades it proxied"
    );
}
