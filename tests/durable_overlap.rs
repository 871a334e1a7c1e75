//! Overlapping appends on one node with the MongoDB store: group commit keeps two appends
//! in flight (one storing while the next reserves seqs), and concurrent appends on one
//! store take turns (`store/mongo/turns.rs`). Under many concurrent POSTs every accepted
//! message still reaches its user once, in seq order, with no seq handed out twice and no
//! hole, idempotent retries find their first message, and the store answers overlapping
//! appends in the order of their seqs.
//!
//! Needs a MongoDB-protocol server: `HERALD_TEST_MONGO_URL` (`./scripts/test.sh` starts
//! one), or a private `secantusd-rs` started here.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use common::procs::shared_mongo;
use common::*;
use futures_util::StreamExt;
use herald::store::mongo::{MongoStore, MongoStoreConfig};
use herald::store::{MessageStore, NewMessage, Target};
use serde_json::{json, Value};

const USERS: [&str; 4] = ["ada", "ben", "cy", "dee"];
/// Batch POSTs, each of [`PER_BATCH`] messages (one per user in turn), in flight at once:
/// more than 100 messages wait while an append runs, so group commit starts a second one
/// alongside it (`ingest/batcher.rs`).
const BATCHES: u64 = 24;
const PER_BATCH: u64 = 60;
/// Single keyed POSTs among them, each posted again once answered.
const KEYED: u64 = 16;
const CONCURRENT: usize = 12;

fn overrides<'a>(url: &'a str, db: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("HERALD_STORE__BACKEND", "mongo"),
        ("HERALD_STORE__MONGO__URL", url),
        ("HERALD_STORE__MONGO__DATABASE", db),
        ("HERALD_STORE__MONGO__OP_TIMEOUT_MS", "2000"),
    ]
}

async fn post(node: &TestNode, path: &str, body: Value) -> Value {
    let (status, v) = node.post(path, &body.to_string()).await;
    assert_eq!(status, 202, "{v}");
    v
}

/// Request `r`: a batch of PER_BATCH messages (payload = message number, to its user in
/// turn), or past BATCHES a keyed single message and its retry; answers the retry's check.
async fn request(node: &TestNode, r: u64) {
    let user = |i: u64| USERS[(i % USERS.len() as u64) as usize];
    if r < BATCHES {
        let messages: Vec<Value> = (r * PER_BATCH..(r + 1) * PER_BATCH)
            .map(|i| json!({"to": user(i), "payload": i}))
            .collect();
        let v = post(
            node,
            "/api/v1/messages/batch",
            json!({ "messages": messages }),
        )
        .await;
        assert_eq!(
            v["results"].as_array().map(Vec::len),
            Some(PER_BATCH as usize),
            "{v}"
        );
        return;
    }
    let i = BATCHES * PER_BATCH + (r - BATCHES);
    let body = json!({"to": user(i), "payload": i, "idempotency_key": format!("overlap-{i}")});
    let first = post(node, "/api/v1/messages", body.clone()).await;
    let retry = post(node, "/api/v1/messages", body).await;
    assert_eq!(retry["id"], first["id"], "message {i}: the retry finds it");
    assert_eq!(retry["duplicate"], true, "message {i}");
}

#[actix_rt::test]
async fn concurrent_posts_reach_each_user_once_in_seq_order_and_retries_find_their_message() {
    let (url, _mp) = shared_mongo();
    let db = format!("overlap_posts_{}", std::process::id());
    let node = start_node(&overrides(&url, &db)).await;
    let mut sockets = Vec::new();
    for user in USERS {
        let mut ws = node.connect(user, "since=0").await;
        ws.welcome().await;
        sockets.push(ws);
    }

    // Keyed singles interleaved with the batches.
    let order: Vec<u64> = (0..BATCHES)
        .flat_map(|k| std::iter::once(k).chain((k < KEYED).then_some(BATCHES + k)))
        .collect();
    futures_util::stream::iter(order)
        .map(|r| request(&node, r))
        .buffer_unordered(CONCURRENT)
        .collect::<Vec<()>>()
        .await;

    let total = BATCHES * PER_BATCH + KEYED;
    let per_user = total / USERS.len() as u64;
    for (k, (user, ws)) in USERS.iter().zip(sockets.iter_mut()).enumerate() {
        let mut seqs = Vec::new();
        let mut payloads = BTreeSet::new();
        for _ in 0..per_user {
            let m = ws.next_of_type("message").await;
            seqs.push(m["seq"].as_u64().unwrap());
            assert!(
                payloads.insert(m["payload"].as_u64().unwrap()),
                "{user}: a payload arrived twice: {m}"
            );
        }
        let want: Vec<u64> = (1..=per_user).collect();
        assert_eq!(seqs, want, "{user}: every seq once, in order, no hole");
        let sent: BTreeSet<u64> = (0..total).filter(|i| i % 4 == k as u64).collect();
        assert_eq!(payloads, sent, "{user}: every accepted message arrived");
        let (s, history) = node
            .get(&format!("/api/v1/users/{user}/messages?since=0&limit=1000"))
            .await;
        assert_eq!(s, 200);
        let stored: Vec<u64> = history["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(
            stored, want,
            "{user}: the store holds exactly what was delivered"
        );
    }
}

#[actix_rt::test]
async fn overlapping_appends_on_one_store_answer_in_the_order_of_their_seqs() {
    const TASKS: usize = 16;
    const APPENDS: usize = 12;
    let (url, _mp) = shared_mongo();
    let store = Arc::new(
        MongoStore::connect(&MongoStoreConfig {
            url,
            database: format!("overlap_store_{}", std::process::id()),
            ..MongoStoreConfig::default()
        })
        .await
        .unwrap(),
    );
    // Every answer's seqs for each user, in the order the answers came back.
    let answered: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let tasks = (0..TASKS).map(|t| {
        let (store, answered) = (store.clone(), answered.clone());
        async move {
            for a in 0..APPENDS {
                let to = if (t + a) % 2 == 0 { "eve" } else { "fay" };
                let batch = vec![message(&["eve", "fay"]), message(&[to])];
                let out = store.append(batch).await.expect("append");
                // Recorded before the next await: the order of the pushes is the order
                // in which the store answered.
                let mut log = answered.lock().unwrap();
                for d in out.iter().flat_map(|a| &a.deliveries) {
                    log.push((d.user.to_string(), d.seq));
                }
            }
        }
    });
    futures_util::future::join_all(tasks).await;
    let log = answered.lock().unwrap().clone();
    for user in ["eve", "fay"] {
        let seqs: Vec<u64> = log.iter().filter(|d| d.0 == user).map(|d| d.1).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{user}: answered in seq order: {seqs:?}"
        );
        let unique: BTreeSet<u64> = seqs.iter().copied().collect();
        assert_eq!(unique.len(), seqs.len(), "{user}: no seq handed out twice");
    }
    let eve = log.iter().filter(|d| d.0 == "eve").count();
    assert_eq!(eve, TASKS * APPENDS * 3 / 2, "every copy answered");
}

fn message(to: &[&str]) -> NewMessage {
    NewMessage {
        target: Target::Users(
            to.iter()
                .map(|u| herald::ids::UserId::parse(u).unwrap())
                .collect(),
        ),
        topic: None,
        payload: serde_json::value::RawValue::from_string("1".into()).unwrap(),
        ttl_s: 600,
        idempotency_key: None,
        arrived_us: 0,
    }
}
