//! The delivery promise cluster-wide, with real processes: three `herald` nodes, a real
//! `redis-server` and a real MongoDB-protocol server. A message whose POST got a 2xx reaches
//! every device of its user, in order, once, whichever node dies and however long the
//! device was offline (within TTL and retention).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::procs::{
    cluster_env, connect, route_nodes, shared_mongo, shared_redis, start_nodes, HeraldProc,
    MongoProc,
};
use common::*;
use serde_json::{json, Value};

/// Environment for durable cluster nodes: the MongoDB store, node liveness and forwards
/// a little slower than the default test timers, cursors flushed every 20 ms.
fn env(redis: &str, mongo: &str, test: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let durable = [
        ("HERALD_ROUTES__NODE_TTL_MS", "900"),
        ("HERALD_CLUSTER__FORWARD_TIMEOUT_MS", "500"),
        ("HERALD_STORE__CURSOR_FLUSH_MS", "20"),
    ];
    cluster_env(redis, Some(mongo), test, &[&durable[..], extra].concat())
}

async fn send(via: &HeraldProc, body: Value) -> Value {
    let (s, v) = via.post("/api/v1/messages", &body.to_string()).await;
    assert_eq!(s, 202, "{v}");
    v
}

#[actix_rt::test]
async fn offline_user_gets_messages_posted_anywhere_on_first_connect_anywhere() {
    let (r, _rp) = shared_redis();
    let (m, _mp) = shared_mongo();
    let nodes = start_nodes(&["a", "b", "c"], &env(&r, &m, "offline", &[])).await;
    for (i, n) in nodes.iter().enumerate() {
        send(n, json!({"to": "olga", "payload": i})).await;
    }
    let mut ws = connect(&nodes[1], "olga", "").await;
    let mut payloads = Vec::new();
    for expect in 1..=3u64 {
        let msg = ws.next_of_type("message").await;
        assert_eq!(msg["seq"], expect);
        payloads.push(msg["payload"].as_u64().unwrap());
    }
    assert_eq!(payloads, vec![0, 1, 2]);
    let (s, h) = nodes[2].get("/api/v1/users/olga/messages?since=1").await;
    assert_eq!(s, 200);
    assert_eq!(h["messages"].as_array().unwrap().len(), 2);
}

#[actix_rt::test]
async fn resume_with_since_and_ack_cursor_work_on_another_node() {
    let (r, _rp) = shared_redis();
    let (m, _mp) = shared_mongo();
    let nodes = start_nodes(&["a", "b", "c"], &env(&r, &m, "resume", &[])).await;
    let mut ws = connect(&nodes[0], "pete", "device=tab").await;
    for i in 0..3 {
        send(&nodes[2], json!({"to": "pete", "payload": i})).await;
    }
    assert_eq!(ws.seqs(3).await, vec![1, 2, 3]);
    ws.send_json(json!({"type": "ack", "seq": 2})).await;
    ws.send_json(json!({"type": "ping"})).await;
    ws.next_of_type("pong").await;
    ws.close().await;
    send(&nodes[1], json!({"to": "pete", "payload": 3})).await;
    // Explicit resume point on another node.
    let mut by_since = connect(&nodes[1], "pete", "device=other&since=3").await;
    assert_eq!(by_since.seqs(1).await, vec![4]);
    // The ack cursor written by node a is the resume point on node c (it is written in
    // batches every 20 ms, so poll until a connection starts right after it).
    eventually("cursor visible cluster-wide", || async {
        let mut again = connect(&nodes[2], "pete", "device=tab").await;
        let first = again.next_of_type("message").await["seq"].as_u64().unwrap();
        again.close().await;
        first == 3
    })
    .await;
}

#[actix_rt::test]
async fn idempotent_retry_through_another_node_returns_the_first_id_and_delivers_once() {
    let (r, _rp) = shared_redis();
    let (m, _mp) = shared_mongo();
    let nodes = start_nodes(&["a", "b"], &env(&r, &m, "idem", &[])).await;
    let mut ws = connect(&nodes[0], "quin", "").await;
    let body = json!({"to": "quin", "payload": "once", "idempotency_key": "pay-42"});
    let first = send(&nodes[0], body.clone()).await;
    let retry = send(&nodes[1], body).await;
    assert_eq!(first["id"], retry["id"]);
    assert_eq!(retry["duplicate"], true);
    send(&nodes[1], json!({"to": "quin", "payload": "next"})).await;
    let a = ws.next_of_type("message").await;
    let b = ws.next_of_type("message").await;
    assert_eq!(
        (a["payload"].as_str(), a["seq"].as_u64()),
        (Some("once"), Some(1))
    );
    assert_eq!(
        (b["payload"].as_str(), b["seq"].as_u64()),
        (Some("next"), Some(2))
    );
}

#[actix_rt::test]
async fn ttl_expired_messages_are_not_delivered() {
    let (r, _rp) = shared_redis();
    let (m, _mp) = shared_mongo();
    let nodes = start_nodes(&["a"], &env(&r, &m, "ttl", &[])).await;
    send(
        &nodes[0],
        json!({"to": "rita", "payload": "short", "ttl_s": 1}),
    )
    .await;
    send(&nodes[0], json!({"to": "rita", "payload": "long"})).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut ws = connect(&nodes[0], "rita", "").await;
    let msg = ws.next_of_type("message").await;
    assert_eq!(
        (msg["payload"].as_str(), msg["seq"].as_u64()),
        (Some("long"), Some(2))
    );
}

#[actix_rt::test]
async fn store_outage_answers_503_keeps_sessions_up_and_loses_nothing_accepted() {
    let (r, _rp) = shared_redis();
    let mut mongo = MongoProc::start();
    let nodes = start_nodes(&["a"], &env(&r, &mongo.url(), "outage", &[])).await;
    let mut ws = connect(&nodes[0], "sven", "").await;
    for i in 0..3 {
        send(&nodes[0], json!({"to": "sven", "payload": i})).await;
    }
    assert_eq!(ws.seqs(3).await, vec![1, 2, 3]);
    mongo.stop();
    let (s, v) = nodes[0]
        .post(
            "/api/v1/messages",
            &json!({"to": "sven", "payload": "lost?"}).to_string(),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (503, Some("store_unavailable")),
        "{v}"
    );
    let (s, _) = http(&format!("{}/readyz", nodes[0].base()), None, None).await;
    assert_eq!(s, 503);
    ws.send_json(json!({"type": "ping"})).await;
    assert_eq!(
        ws.next_of_type("pong").await["type"],
        "pong",
        "session stays up"
    );
    mongo.restart();
    eventually("ready again", || async {
        http(&format!("{}/readyz", nodes[0].base()), None, None)
            .await
            .0
            == 200
    })
    .await;
    send(&nodes[0], json!({"to": "sven", "payload": "after"})).await;
    // A new device gets everything accepted before the outage, and nothing refused.
    let mut fresh = connect(&nodes[0], "sven", "device=new").await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(fresh.next_of_type("message").await["payload"].clone());
    }
    assert_eq!(got, vec![json!(0), json!(1), json!(2), json!("after")]);
}

#[actix_rt::test]
async fn killed_node_while_messages_flow_client_reconnects_elsewhere_and_misses_nothing() {
    let (r, _rp) = shared_redis();
    let (m, _mp) = shared_mongo();
    let mut nodes = start_nodes(&["a", "b", "c"], &env(&r, &m, "failover", &[])).await;
    let mut ws = connect(&nodes[1], "tara", "").await;
    eventually("route to b", || async {
        route_nodes(&nodes[0], "tara").await == ["b"]
    })
    .await;
    let total = 150u64;
    let producer = {
        let base = nodes[0].base();
        actix_rt::spawn(async move {
            let mut accepted = 0u64;
            for i in 0..total {
                let body = json!({"to": "tara", "payload": i}).to_string();
                let (s, _) = http(
                    &format!("{base}/api/v1/messages"),
                    Some(&body),
                    Some(procs::API_KEY),
                )
                .await;
                if s == 202 {
                    accepted += 1;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            accepted
        })
    };
    let mut seqs: Vec<u64> = Vec::new();
    // Read some live, then lose the node under the client.
    while seqs.len() < 30 {
        seqs.push(ws.next_of_type("message").await["seq"].as_u64().unwrap());
    }
    nodes[1].kill9();
    loop {
        match ws.next_event().await {
            Event::Json(v) if v["type"] == "message" => seqs.push(v["seq"].as_u64().unwrap()),
            Event::Json(_) => {}
            Event::Closed(..) => break,
        }
    }
    let accepted = producer.await.unwrap();
    assert_eq!(accepted, total, "node a accepts every message");
    let last = *seqs.last().unwrap();
    let mut ws = connect(&nodes[2], "tara", &format!("since={last}")).await;
    while (seqs.len() as u64) < total {
        seqs.push(ws.next_of_type("message").await["seq"].as_u64().unwrap());
    }
    assert_eq!(
        seqs,
        (1..=total).collect::<Vec<_>>(),
        "in order, no gaps, no duplicates"
    );
}

/// A device's view: everything it received, in arrival order, across connections.
struct Device {
    user: String,
    name: String,
    seqs: Vec<u64>,
}

/// One soak round: a random half of the devices connects (each to a random node, resuming
/// after what it has), 250 messages go through random nodes to random users, and every
/// online device reads up to its user's newest seq before disconnecting.
async fn soak_round(
    nodes: &[HeraldProc],
    users: &[String],
    devices: &mut [Device],
    accepted: &mut BTreeMap<String, u64>,
    rng: &mut rand_like::Rng,
) {
    let mut online = Vec::new();
    for (i, dev) in devices.iter().enumerate() {
        if rng.next().is_multiple_of(2) {
            let node = &nodes[(rng.next() % 3) as usize];
            let since = dev
                .seqs
                .last()
                .map_or(String::new(), |s| format!("&since={s}"));
            let ws = connect(node, &dev.user, &format!("device={}{since}", dev.name)).await;
            online.push((i, ws));
        }
    }
    let mut posts = Vec::new();
    for k in 0..250 {
        let user = users[(rng.next() % users.len() as u64) as usize].clone();
        let base = nodes[(rng.next() % 3) as usize].base();
        posts.push((user, base, k));
    }
    let producer = actix_rt::spawn(async move {
        let mut ok: BTreeMap<String, u64> = BTreeMap::new();
        for (user, base, k) in posts {
            let body = json!({"to": user, "payload": k}).to_string();
            let (s, v) = http(
                &format!("{base}/api/v1/messages"),
                Some(&body),
                Some(procs::API_KEY),
            )
            .await;
            assert_eq!(s, 202, "{v}");
            *ok.entry(user).or_default() += 1;
        }
        ok
    });
    // Online devices read while the producer runs, then disconnect.
    for (u, n) in producer.await.unwrap() {
        *accepted.entry(u).or_default() += n;
    }
    for (i, mut ws) in online {
        let dev = &mut devices[i];
        let target = accepted.get(&dev.user).copied().unwrap_or(0);
        while dev.seqs.last().copied().unwrap_or(0) < target {
            match tokio::time::timeout(Duration::from_secs(10), ws.next_event()).await {
                Ok(Event::Json(v)) if v["type"] == "message" => {
                    dev.seqs.push(v["seq"].as_u64().unwrap())
                }
                Ok(Event::Json(_)) => {}
                other => panic!("{}/{}: {other:?}", dev.user, dev.name),
            }
        }
        ws.close().await;
    }
}

#[actix_rt::test]
async fn soak_churning_clients_across_nodes_each_end_with_exactly_their_users_sequence() {
    let (r, _rp) = shared_redis();
    let (m, _mp) = shared_mongo();
    let nodes = start_nodes(&["a", "b", "c"], &env(&r, &m, "soak", &[])).await;
    let users: Vec<String> = (0..80).map(|i| format!("soak{i}")).collect();
    let rounds: usize = std::env::var("HERALD_SOAK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25);
    let mut rng = rand_like::Rng::new(0x5eed);
    let mut devices: Vec<Device> = users
        .iter()
        .flat_map(|u| {
            (0..3).map(move |d| Device {
                user: u.clone(),
                name: format!("d{d}"),
                seqs: Vec::new(),
            })
        })
        .collect();
    let mut accepted: BTreeMap<String, u64> = BTreeMap::new();
    for round in 0..rounds {
        let t0 = std::time::Instant::now();
        soak_round(&nodes, &users, &mut devices, &mut accepted, &mut rng).await;
        eprintln!("soak round {round}: {:?}", t0.elapsed());
    }
    // Final catch-up: every device connects once more and drains.
    for dev in devices.iter_mut() {
        let target = accepted.get(&dev.user).copied().unwrap_or(0);
        if dev.seqs.last().copied().unwrap_or(0) < target {
            let since = dev
                .seqs
                .last()
                .map_or(String::new(), |s| format!("&since={s}"));
            let mut ws =
                connect(&nodes[0], &dev.user, &format!("device={}{since}", dev.name)).await;
            while dev.seqs.last().copied().unwrap_or(0) < target {
                dev.seqs
                    .push(ws.next_of_type("message").await["seq"].as_u64().unwrap());
            }
        }
        let want: Vec<u64> = (1..=target).collect();
        assert_eq!(
            dev.seqs, want,
            "{}/{} must see exactly 1..={target} once, in order",
            dev.user, dev.name
        );
    }
}

/// A tiny deterministic generator, so the soak is reproducible without another crate.
mod rand_like {
    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Self {
            Rng(seed)
        }

        pub fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }
}
