//! The delivery promise for devices that stay online, with real processes (`herald` nodes,
//! `redis-server`, a MongoDB-protocol server): a message accepted anywhere reaches a device
//! connected anywhere even when the live push for it is lost, at the latest at the next
//! position check, and the node counts the recovery.

mod common;

use std::time::{Duration, Instant};

use common::procs::{cluster_env, connect, shared_mongo, shared_redis, start_nodes, HeraldProc};
use common::*;
use serde_json::{json, Value};

async fn send(via: &HeraldProc, to: &str, payload: Value) {
    let body = json!({"to": to, "payload": payload}).to_string();
    let (s, v) = via.post("/api/v1/messages", &body).await;
    assert_eq!(s, 202, "{v}");
}

async fn counter(node: &HeraldProc, name: &str) -> u64 {
    let (s, v) = node.stats().await;
    assert_eq!(s, 200, "{v}");
    v["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name}: {v}"))
}

#[actix_rt::test]
async fn device_on_a_node_the_sender_does_not_know_yet_gets_the_message_live() {
    let (r, _rp) = shared_redis();
    // The old node refreshes its view of live peers only every 10 s (node TTL / 3).
    let slow_view = [("HERALD_ROUTES__NODE_TTL_MS", "30000")];
    let nodes = start_nodes(&["old"], &cluster_env(&r, None, "newnode", &slow_view)).await;
    let old = &nodes[0];
    // A new node joins; a device connects to it at once, and its user gets a message
    // through the old node right away (a rolling deploy's window).
    let new = HeraldProc::start("new", &cluster_env(&r, None, "newnode", &slow_view));
    eventually("new node ready", || async {
        http(&format!("{}/readyz", new.base()), None, None).await.0 == 200
    })
    .await;
    let mut ws = connect(&new, "nina", "").await;
    let posted = Instant::now();
    send(old, "nina", json!("hello")).await;
    let msg = tokio::time::timeout(Duration::from_secs(1), ws.next_of_type("message"))
        .await
        .expect("delivered live within 1 s, not at the next position check");
    assert_eq!(msg["payload"], "hello");
    assert_eq!(msg["seq"], 1);
    eprintln!("delivered after {:?}", posted.elapsed());
    assert!(counter(old, "peers_resolved").await >= 1);
}

#[actix_rt::test]
async fn devices_behind_blocked_forwards_get_every_message_by_the_position_check() {
    let (r, _rp) = shared_redis();
    let (m, _mp) = shared_mongo();
    let check = [("HERALD_SESSION__POSITION_CHECK_MS", "500")];
    let nodes = start_nodes(&["sender"], &cluster_env(&r, Some(&m), "blocked", &check)).await;
    let sender = &nodes[0];
    // The receiver refuses every forward: its cluster secret differs (401 on each).
    let mut extra = check.to_vec();
    extra.push(("HERALD_CLUSTER__SECRET", "another-secret-0123456789abcdef"));
    let receiver = HeraldProc::start("receiver", &cluster_env(&r, Some(&m), "blocked", &extra));
    eventually("receiver ready", || async {
        http(&format!("{}/readyz", receiver.base()), None, None)
            .await
            .0
            == 200
    })
    .await;
    let mut ws = connect(&receiver, "rita", "").await;
    const N: u64 = 20;
    for i in 1..=N {
        send(sender, "rita", json!(i)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last_post = Instant::now();
    let mut seqs = Vec::new();
    while seqs.len() < N as usize {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next_of_type("message"))
            .await
            .expect("every message arrives within a few position checks");
        assert_eq!(msg["payload"], msg["seq"], "seq i carries payload i");
        seqs.push(msg["seq"].as_u64().unwrap());
    }
    eprintln!(
        "all {N} delivered {:?} after the last post",
        last_post.elapsed()
    );
    assert_eq!(seqs, (1..=N).collect::<Vec<_>>(), "in order, each once");
    assert!(
        counter(sender, "forward_failures").await >= 1,
        "pushes were lost"
    );
    assert!(
        counter(&receiver, "position_catchups").await >= 1,
        "and recovered"
    );
    // Nothing more comes: every message was delivered exactly once.
    let more = tokio::time::timeout(Duration::from_millis(1200), ws.next_of_type("message")).await;
    assert!(more.is_err(), "no duplicate: {more:?}");
}

#[actix_rt::test]
async fn presence_lists_the_devices_of_a_user_on_every_node() {
    let (r, _rp) = shared_redis();
    let nodes = start_nodes(&["p1", "p2"], &cluster_env(&r, None, "presence", &[])).await;
    let _a = connect(&nodes[0], "pia", "device=phone").await;
    let _b = connect(&nodes[1], "pia", "device=laptop").await;
    eventually("both nodes bound", || async {
        let (_, v) = nodes[0].get("/api/v1/users/pia/presence").await;
        v["nodes"].as_array().map_or(0, |n| n.len()) == 2
    })
    .await;
    let (s, v) = nodes[0].get("/api/v1/users/pia/presence").await;
    assert_eq!(s, 200, "{v}");
    let mut seen: Vec<(String, String)> = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["device"].as_str().unwrap().into(),
                d["node"].as_str().unwrap().into(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("laptop".into(), "p2".into()),
            ("phone".into(), "p1".into())
        ]
    );
    assert_eq!(v["unreachable"], json!([]));
    assert_eq!(v["online"], true);
}
