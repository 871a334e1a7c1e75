//! `GET /api/v1/messages/{id}/status` on a real node, with the memory store and with the
//! MongoDB store: each recipient's seq and copy, and each of its devices' ack cursor
//! measured against that seq; refusals of unknown and malformed ids and of callers
//! without the producer key.
//!
//! The MongoDB tests need a MongoDB-protocol server: `HERALD_TEST_MONGO_URL`
//! (`./scripts/test.sh` starts one), or a private `secantusd-rs` started here; without
//! either they fail.

mod common;

use common::procs::shared_mongo;
use common::*;
use futures_util::TryStreamExt;
use serde_json::{json, Value};

/// Cursors are flushed every 20 ms, so an ack shows in the status within a poll or two.
const FAST_CURSORS: (&str, &str) = ("HERALD_STORE__CURSOR_FLUSH_MS", "20");

/// A node on the MongoDB store at `url`, in a database of its own.
async fn mongo_node(url: &str, db: &str) -> TestNode {
    start_node(&[
        ("HERALD_STORE__BACKEND", "mongo"),
        ("HERALD_STORE__MONGO__URL", url),
        ("HERALD_STORE__MONGO__DATABASE", db),
        ("HERALD_STORE__MONGO__OP_TIMEOUT_MS", "1500"),
        FAST_CURSORS,
    ])
    .await
}

async fn drop_database(url: &str, db: &str) {
    let client = mongodb::Client::with_uri_str(url).await.unwrap();
    let _ = client.database(db).drop().await;
}

/// A database name unique to this process and test.
fn database(test: &str) -> String {
    format!("status_{}_{test}", std::process::id())
}

/// Polls the message's status until `done` holds; answers the last body seen.
async fn status_when(node: &TestNode, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/api/v1/messages/{id}/status");
    let mut last = Value::Null;
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        let (s, v) = node.get(&path).await;
        assert_eq!(s, 200, "{v}");
        if done(&v) {
            return v;
        }
        last = v;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("status never reached the expected state; last: {last}");
}

/// Whether `user`'s `device` has acked the message, per a status body.
fn acked(status: &Value, user: &str, device: &str) -> bool {
    status["recipients"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["user"] == user)
        .flat_map(|r| r["devices"].as_array().into_iter().flatten())
        .any(|d| d["device"] == device && d["acked"] == true)
}

/// Alice's tablet acks her first message; then a message goes to alice and bob. The tablet
/// receives it but does not ack it; alice's phone connects afterwards, receives both and
/// acks the second; bob never connects.
async fn acks_are_reported_per_device_of_each_recipient(node: &TestNode) {
    let mut tablet = node.connect("alice", "device=tablet").await;
    tablet.welcome().await;
    let first = node.send("alice", json!("first")).await;
    assert_eq!(tablet.seqs(1).await, [1]);
    tablet.send_json(json!({"type": "ack", "seq": 1})).await;
    status_when(node, &first, |v| acked(v, "alice", "tablet")).await;

    let body = json!({"to": ["bob", "alice"], "payload": "second"}).to_string();
    let (s, v) = node.post("/api/v1/messages", &body).await;
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(
        tablet.seqs(1).await,
        [2],
        "the tablet receives it, and never acks it"
    );

    let mut phone = node.connect("alice", "device=phone").await;
    phone.welcome().await;
    assert_eq!(phone.seqs(2).await, [1, 2]);
    phone.send_json(json!({"type": "ack", "seq": 2})).await;

    let status = status_when(node, &id, |v| acked(v, "alice", "phone")).await;
    assert_eq!(
        status,
        json!({"id": id, "recipients": [
            {"user": "alice", "seq": 2, "stored": true, "devices": [
                {"device": "phone", "acked_seq": 2, "acked": true},
                {"device": "tablet", "acked_seq": 1, "acked": false},
            ]},
            {"user": "bob", "seq": 1, "stored": true, "devices": []},
        ]})
    );
    tablet.close().await;
    phone.close().await;
}

/// Unknown ids (and broadcasts, which are never stored) answer 404, malformed ids 400,
/// and a caller without the producer key 401 (403 with a wrong one), before any lookup.
async fn unknown_malformed_and_unauthorized_requests_are_refused(node: &TestNode) {
    let unknown = "0192f4c8-7d1e-7a53-9c2b-6f1d2e3a4b5c";
    let (s, v) = node
        .get(&format!("/api/v1/messages/{unknown}/status"))
        .await;
    assert_eq!((s, &v["error"]["code"]), (404, &json!("message_not_found")));

    let (s, v) = node
        .post(
            "/api/v1/messages",
            &json!({"broadcast": true, "payload": 1}).to_string(),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let broadcast = v["id"].as_str().unwrap();
    let (s, v) = node
        .get(&format!("/api/v1/messages/{broadcast}/status"))
        .await;
    assert_eq!((s, &v["error"]["code"]), (404, &json!("message_not_found")));

    for malformed in [
        "not-a-message-id",
        "0192f4c87d1e7a539c2b6f1d2e3a4b5c",
        "x%2Fy",
    ] {
        let (s, v) = node
            .get(&format!("/api/v1/messages/{malformed}/status"))
            .await;
        assert_eq!(
            (s, &v["error"]["code"]),
            (400, &json!("invalid_id")),
            "{malformed}"
        );
    }

    let id = node.send("alice", json!("secret")).await;
    let url = node.url(&format!("/api/v1/messages/{id}/status"));
    let (s, v) = http(&url, None, None).await;
    assert_eq!((s, &v["error"]["code"]), (401, &json!("api_key_missing")));
    let (s, v) = http(&url, None, Some("not-the-key")).await;
    assert_eq!((s, &v["error"]["code"]), (403, &json!("api_key_invalid")));
    let (s, v) = http(&node.url("/api/v1/messages/bad/status"), None, None).await;
    assert_eq!(s, 401, "the key is checked before the id: {v}");
}

#[actix_rt::test]
async fn on_the_memory_store_status_shows_which_devices_of_each_recipient_acked() {
    let node = start_node(&[FAST_CURSORS]).await;
    acks_are_reported_per_device_of_each_recipient(&node).await;
}

#[actix_rt::test]
async fn on_the_memory_store_unknown_malformed_and_keyless_status_requests_are_refused() {
    let node = start_node(&[]).await;
    unknown_malformed_and_unauthorized_requests_are_refused(&node).await;
}

#[actix_rt::test]
async fn on_the_memory_store_a_copy_past_its_ttl_is_reported_as_no_longer_stored() {
    let node = start_node(&[]).await;
    let body = json!({"to": "carol", "payload": 1, "ttl_s": 1}).to_string();
    let (s, v) = node.post("/api/v1/messages", &body).await;
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap();
    let status = status_when(&node, id, |v| v["recipients"][0]["stored"] == false).await;
    assert_eq!(status["recipients"][0]["seq"], 1);
}

#[actix_rt::test]
async fn on_the_mongo_store_status_shows_which_devices_of_each_recipient_acked() {
    let (url, _server) = shared_mongo();
    let db = database("acks");
    let node = mongo_node(&url, &db).await;
    acks_are_reported_per_device_of_each_recipient(&node).await;
    // The lookup by id reads a range of `_id` ("<id>:<user>"): no index of its own, so
    // storing a copy pays for no more than the `_id`, `user_seq` and TTL indexes.
    let client = mongodb::Client::with_uri_str(&url).await.unwrap();
    let messages = client
        .database(&db)
        .collection::<mongodb::bson::Document>("messages");
    let keys: Vec<mongodb::bson::Document> = messages
        .list_indexes()
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.keys)
        .collect();
    assert!(!keys.contains(&mongodb::bson::doc! {"id": 1}), "{keys:?}");
    assert_eq!(keys.len(), 3, "{keys:?}");
    drop_database(&url, &db).await;
}

#[actix_rt::test]
async fn on_the_mongo_store_unknown_malformed_and_keyless_status_requests_are_refused() {
    let (url, _server) = shared_mongo();
    let db = database("refused");
    let node = mongo_node(&url, &db).await;
    unknown_malformed_and_unauthorized_requests_are_refused(&node).await;
    drop_database(&url, &db).await;
}
