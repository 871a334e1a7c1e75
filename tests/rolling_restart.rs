//! The delivery promise for devices that stay online while the cluster restarts under them:
//! three `herald` nodes on a real Redis and a real MongoDB-protocol server, devices kept
//! connected (reconnecting only when their own node drains), two producers posting to the
//! same users through different nodes, and every node restarted in turn (SIGTERM, start
//! again on the same address). Every device must end with every message that got a 2xx,
//! and no session may ever send a seq twice or out of order.
//!
//! `HERALD_ROLLING_ROUNDS` sets the number of node restarts (default 12: each node four
//! times; before the fix of issue 13 this lost deliveries in most runs of 12 restarts). A
//! second run (6 restarts) has each node's hub shards on its two HTTP workers
//! (`server.hub_threads = "workers"`), whose shards stop with the HTTP server in a drain.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::procs::{self, shared_mongo, shared_redis, start_nodes, HeraldProc};
use common::Rng;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const USERS: usize = 24;
const DEVICES: usize = 3;
/// Concurrent posting loops per producer.
const PRODUCER_LOOPS: usize = 4;

/// The nodes' settings; `name` keeps each test's Redis keys and database apart, `extra`
/// adds to them.
fn env(redis: &str, mongo: &str, name: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let name = format!("t{}_{name}", std::process::id());
    [
        ("HERALD_ROUTES__BACKEND", "redis"),
        ("HERALD_ROUTES__REDIS_URL", redis),
        ("HERALD_ROUTES__KEY_PREFIX", name.as_str()),
        ("HERALD_ROUTES__ROUTE_TTL_MS", "1500"),
        ("HERALD_ROUTES__NODE_TTL_MS", "900"),
        ("HERALD_ROUTES__SWEEP_MS", "200"),
        ("HERALD_CLUSTER__FORWARD_TIMEOUT_MS", "500"),
        ("HERALD_CLUSTER__FORWARD_RETRIES", "1"),
        ("HERALD_STORE__BACKEND", "mongo"),
        ("HERALD_STORE__MONGO__URL", mongo),
        ("HERALD_STORE__MONGO__DATABASE", name.as_str()),
        ("HERALD_STORE__MONGO__OP_TIMEOUT_MS", "1500"),
        ("HERALD_STORE__CURSOR_FLUSH_MS", "50"),
        ("HERALD_SERVER__SHUTDOWN_TIMEOUT_S", "5"),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// What one device saw, across its connections.
#[derive(Default)]
struct DeviceLog {
    /// Message ids in the order they were handled (after dedupe by seq).
    ids: Vec<String>,
    last_seq: u64,
    /// Frames dropped by the client's dedupe (at or below its last seq) after a reconnect.
    dup_after_reconnect: u64,
    /// Broken promises inside one session: a seq at or below the session's previous one.
    in_session_violations: Vec<String>,
    connections: u64,
}

/// Keeps one device connected to a live node, resuming from the last seq it handled.
async fn device(
    user: String,
    name: String,
    live: Rc<RefCell<Vec<u16>>>,
    stop: Rc<Cell<bool>>,
    log: Rc<RefCell<DeviceLog>>,
    mut rng: Rng,
) {
    while !stop.get() {
        let port = {
            let l = live.borrow();
            l[rng.below(l.len())]
        };
        let since = log.borrow().last_seq;
        let url = format!(
            "ws://127.0.0.1:{port}/ws?token={}&device={name}&since={since}",
            procs::token(&user)
        );
        let Ok(Ok((mut ws, _))) = tokio::time::timeout(
            Duration::from_secs(3),
            tokio_tungstenite::connect_async(url),
        )
        .await
        else {
            tokio::time::sleep(Duration::from_millis(50 + rng.below(100) as u64)).await;
            continue;
        };
        log.borrow_mut().connections += 1;
        let mut session_last = 0u64;
        while let Some(Ok(frame)) = ws.next().await {
            let Message::Text(text) = frame else {
                if frame.is_close() {
                    break;
                }
                continue;
            };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["type"] != "message" || v["seq"].is_null() {
                continue;
            }
            let seq = v["seq"].as_u64().unwrap();
            let mut l = log.borrow_mut();
            if seq <= session_last {
                l.in_session_violations
                    .push(format!("seq {seq} after {session_last} in one session"));
            }
            session_last = session_last.max(seq);
            if seq <= l.last_seq {
                l.dup_after_reconnect += 1;
                continue;
            }
            l.last_seq = seq;
            l.ids.push(v["id"].as_str().unwrap().to_string());
        }
        // Reconnect with a little jitter, like a real client.
        tokio::time::sleep(Duration::from_millis(20 + rng.below(200) as u64)).await;
    }
}

/// Posts to random users through `home` (or another live node while it restarts) until
/// stopped; returns the ids that got a 2xx, per user.
async fn producer(
    home: u16,
    live: Rc<RefCell<Vec<u16>>>,
    stop: Rc<Cell<bool>>,
    accepted: Rc<RefCell<BTreeMap<String, Vec<String>>>>,
    mut rng: Rng,
) {
    let mut k = 0u64;
    while !stop.get() {
        let port = {
            let l = live.borrow();
            if l.contains(&home) {
                home
            } else {
                l[rng.below(l.len())]
            }
        };
        let user = format!("roll{}", rng.below(USERS));
        let body = json!({"to": user, "payload": {"via": port, "k": k}}).to_string();
        k += 1;
        // A refused or cut connection (node restarting) is simply not accepted.
        if let Some(id) = try_post(port, &body).await {
            accepted.borrow_mut().entry(user).or_default().push(id);
        }
        tokio::time::sleep(Duration::from_millis(rng.below(4) as u64)).await;
    }
}

/// One request on a fresh connection (with the admin key for stats, else the API key);
/// `None` when the node refused or cut the connection (it may be restarting).
async fn exchange(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, Value)> {
    let key = if path == "/api/v1/stats" {
        procs::ADMIN_KEY
    } else {
        procs::API_KEY
    };
    procs::try_request(port, method, path, key, body).await
}

/// Posts one message; its id when the answer was a 202.
async fn try_post(port: u16, body: &str) -> Option<String> {
    match exchange(port, "POST", "/api/v1/messages", body).await? {
        (202, v) => Some(v["id"].as_str()?.to_string()),
        _ => None,
    }
}

async fn ready(port: u16, peers: usize) -> bool {
    let ready = exchange(port, "GET", "/readyz", "").await;
    let stats = exchange(port, "GET", "/api/v1/stats", "").await;
    matches!(ready, Some((200, _)))
        && matches!(stats, Some((200, v)) if v["peers"].as_array().map_or(0, |p| p.len()) == peers)
}

type Logs = Vec<(String, String, Rc<RefCell<DeviceLog>>)>;
type Accepted = Rc<RefCell<BTreeMap<String, Vec<String>>>>;

/// One device task per (user, device), each with its own log.
fn spawn_devices(
    live: &Rc<RefCell<Vec<u16>>>,
    stop: &Rc<Cell<bool>>,
    seed: &mut Rng,
) -> (Logs, Vec<actix_rt::task::JoinHandle<()>>) {
    let mut logs = Vec::new();
    let mut tasks = Vec::new();
    for u in 0..USERS {
        for d in 0..DEVICES {
            let log = Rc::new(RefCell::new(DeviceLog::default()));
            logs.push((format!("roll{u}"), format!("d{d}"), log.clone()));
            tasks.push(actix_rt::spawn(device(
                format!("roll{u}"),
                format!("d{d}"),
                live.clone(),
                stop.clone(),
                log,
                Rng::new(seed.next()),
            )));
        }
    }
    (logs, tasks)
}

/// SIGTERM and restart each node in turn, `rounds` times, waiting for it to be ready.
async fn restart_in_turn(
    nodes: &mut [HeraldProc],
    env: &[(String, String)],
    live: &Rc<RefCell<Vec<u16>>>,
    rounds: usize,
) {
    for round in 0..rounds {
        let i = round % nodes.len();
        let port = nodes[i].port;
        live.borrow_mut().retain(|p| *p != port);
        let t0 = Instant::now();
        let code = nodes[i].terminate();
        assert_eq!(
            code,
            Some(0),
            "node {} exits 0 after SIGTERM",
            nodes[i].name
        );
        nodes[i] = HeraldProc::start_on(&nodes[i].name.clone(), env, port);
        common::eventually("restarted node ready", || ready(port, 3)).await;
        live.borrow_mut().push(port);
        eprintln!(
            "round {round}: restarted {} in {:?}",
            nodes[i].name,
            t0.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
}

/// Whether every device has every message accepted for its user.
fn complete(logs: &Logs, accepted: &Accepted) -> bool {
    let acc = accepted.borrow();
    logs.iter().all(|(u, _, l)| {
        let l = l.borrow();
        let got: BTreeSet<&String> = l.ids.iter().collect();
        acc.get(u)
            .is_none_or(|ids| ids.iter().all(|id| got.contains(id)))
    })
}

/// Checks every device's log: no in-session violation, no id twice, nothing missing.
fn check(logs: &Logs, accepted: &Accepted, rounds: usize) {
    let acc = accepted.borrow();
    let total: usize = acc.values().map(Vec::len).sum();
    let mut lost = Vec::new();
    let mut dups = 0;
    for (user, dev, log) in logs {
        let l = log.borrow();
        dups += l.dup_after_reconnect;
        assert!(
            l.in_session_violations.is_empty(),
            "{user}/{dev}: {:?}",
            l.in_session_violations
        );
        let got: BTreeSet<&String> = l.ids.iter().collect();
        assert_eq!(got.len(), l.ids.len(), "{user}/{dev} handled an id twice");
        for id in acc.get(user).map_or(&[][..], Vec::as_slice) {
            if !got.contains(id) {
                lost.push(format!("{user}/{dev}: {id}"));
            }
        }
    }
    eprintln!(
        "rolling restart: {rounds} restarts, {total} messages accepted, {} deliveries expected, \
         {} lost, {dups} duplicates dropped by client dedupe",
        total * DEVICES,
        lost.len()
    );
    assert!(lost.is_empty(), "lost deliveries: {lost:?}");
}

#[actix_rt::test]
async fn devices_that_stay_connected_miss_nothing_while_every_node_restarts_in_turn() {
    let rounds: usize = std::env::var("HERALD_ROLLING_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    rolling(rounds, "rolling", &[]).await;
}

#[actix_rt::test]
async fn the_same_holds_with_the_hub_shards_on_two_http_workers_per_node() {
    let extra = [
        ("HERALD_SERVER__WORKERS", "2"),
        ("HERALD_SERVER__HUB_THREADS", "workers"),
    ];
    rolling(6, "rolling_workers", &extra).await;
}

/// Three nodes with `extra` settings, devices and producers, `rounds` restarts; then checks.
async fn rolling(rounds: usize, name: &str, extra: &[(&str, &str)]) {
    let (r, _rp) = shared_redis();
    let (m, _mp) = shared_mongo();
    let env = env(&r, &m, name, extra);
    let mut nodes: Vec<HeraldProc> = start_nodes(&["a", "b", "c"], &env).await;
    let live = Rc::new(RefCell::new(
        nodes.iter().map(|n| n.port).collect::<Vec<_>>(),
    ));
    let stop_devices = Rc::new(Cell::new(false));
    let stop_producers = Rc::new(Cell::new(false));
    let accepted: Accepted = Rc::default();
    let mut seed = Rng::new(0x7011);
    let (logs, tasks) = spawn_devices(&live, &stop_devices, &mut seed);
    // Everyone connected before the traffic starts.
    common::eventually("every device connected", || {
        let logs = &logs;
        async move { logs.iter().all(|(_, _, l)| l.borrow().connections > 0) }
    })
    .await;

    let mut producers = Vec::new();
    for home in [nodes[0].port, nodes[1].port] {
        for _ in 0..PRODUCER_LOOPS {
            producers.push(actix_rt::spawn(producer(
                home,
                live.clone(),
                stop_producers.clone(),
                accepted.clone(),
                Rng::new(seed.next()),
            )));
        }
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    restart_in_turn(&mut nodes, &env, &live, rounds).await;
    stop_producers.set(true);
    for p in producers {
        p.await.unwrap();
    }

    // Every device catches up with everything accepted for its user.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !complete(&logs, &accepted) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_devices.set(true);
    for t in tasks {
        t.abort();
    }
    check(&logs, &accepted, rounds);
}
