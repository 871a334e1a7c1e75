//! Producer REST API: validation with clear errors, size limits, API keys, batches.

mod common;

use common::*;
use serde_json::json;

#[actix_rt::test]
async fn api_key_is_required_and_checked() {
    let node = start_node(&[]).await;
    let body = json!({"to": "u", "payload": 1}).to_string();
    let (s, v) = http(&node.url("/api/v1/messages"), Some(&body), None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("api_key_missing"))
    );
    let (s, v) = http(
        &node.url("/api/v1/messages"),
        Some(&body),
        Some("wrong-key-123"),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("api_key_invalid"))
    );
    let (s, _) = http(&node.url("/api/v1/users/u/presence"), None, None).await;
    assert_eq!(s, 401);
}

#[actix_rt::test]
async fn malformed_json_is_a_400_and_nothing_is_stored() {
    let node = start_node(&[]).await;
    for bad in ["{", "not json", "[]", "{\"to\":\"u\",\"payload\":}"] {
        let (s, v) = node.post("/api/v1/messages", bad).await;
        assert_eq!(s, 400, "{bad}: {v}");
        let code = v["error"]["code"].as_str().unwrap();
        assert!(code == "invalid_json" || code == "invalid_body", "{v}");
    }
    let (_, v) = node.get("/api/v1/users/u/messages").await;
    assert_eq!(v["last_seq"], 0);
}

#[actix_rt::test]
async fn each_invalid_field_is_named_in_the_error() {
    let node = start_node(&[("HERALD_INGEST__MAX_RECIPIENTS", "3")]).await;
    let cases = [
        (json!({"to": "u", "payload": 1, "colour": "red"}), "colour"),
        (json!({"to": "u"}), "payload"),
        (json!({"payload": 1}), "to"),
        (json!({"to": "bad user", "payload": 1}), "to"),
        (json!({"to": ["ok", "not ok"], "payload": 1}), "to[1]"),
        (json!({"to": [], "payload": 1}), "to"),
        (json!({"to": ["a", "b", "c", "d"], "payload": 1}), "to"),
        (json!({"to": 7, "payload": 1}), "to"),
        (json!({"to": "u", "broadcast": true, "payload": 1}), "to"),
        (json!({"to": "u", "payload": 1, "ttl_s": 0}), "ttl_s"),
        (json!({"to": "u", "payload": 1, "ttl_s": -5}), "ttl_s"),
        (json!({"to": "u", "payload": 1, "topic": ""}), "topic"),
        (
            json!({"to": "u", "payload": 1, "idempotency_key": ""}),
            "idempotency_key",
        ),
        (json!({"to": "u", "payload": 1, "ttl_s": "soon"}), "ttl_s"),
    ];
    for (body, field) in cases {
        let (s, v) = node.post("/api/v1/messages", &body.to_string()).await;
        assert_eq!(s, 400, "{body}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(field),
            "{body}: message `{msg}` should name `{field}`"
        );
    }
    let (_, stats) = node.stats().await;
    assert_eq!(stats["counters"]["accepted"], 0);
}

#[actix_rt::test]
async fn oversize_body_gets_413_and_the_server_keeps_serving() {
    let node = start_node(&[("HERALD_INGEST__MAX_BODY_BYTES", "2048")]).await;
    let body = json!({"to": "u", "payload": "x".repeat(4096)}).to_string();
    let (s, v) = node.post("/api/v1/messages", &body).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (413, Some("body_too_large"))
    );
    let (s, _) = node
        .post(
            "/api/v1/messages",
            &json!({"to": "u", "payload": 1}).to_string(),
        )
        .await;
    assert_eq!(s, 202);
}

#[actix_rt::test]
async fn batch_accepts_valid_items_and_rejects_invalid_ones_individually() {
    let node = start_node(&[]).await;
    let mut ws = node.connect("bat", "").await;
    ws.welcome().await;
    let body = json!({"messages": [
        {"to": "bat", "payload": 1},
        {"to": "no good", "payload": 2},
        {"to": "bat", "payload": 3, "idempotency_key": "k"},
        {"to": "bat", "payload": 3, "idempotency_key": "k"},
    ]})
    .to_string();
    let (s, v) = node.post("/api/v1/messages/batch", &body).await;
    assert_eq!(s, 207, "{v}");
    assert_eq!(
        (v["accepted"].as_u64(), v["rejected"].as_u64()),
        (Some(3), Some(1))
    );
    let r = v["results"].as_array().unwrap();
    assert_eq!(r[0]["status"], 202);
    assert_eq!(r[1]["status"], 400);
    assert!(r[1]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("messages[1].to"));
    assert_eq!(r[2]["id"], r[3]["id"]);
    assert_eq!(r[3]["duplicate"], true);
    let got: Vec<_> = (0..2).map(|_| ()).collect();
    let mut payloads = Vec::new();
    for _ in got {
        payloads.push(
            ws.next_of_type("message").await["payload"]
                .as_u64()
                .unwrap(),
        );
    }
    assert_eq!(payloads, vec![1, 3]);
    let all_ok = json!({"messages": [{"to": "bat", "payload": 4}]}).to_string();
    let (s, v) = node.post("/api/v1/messages/batch", &all_ok).await;
    assert_eq!((s, v["accepted"].as_u64()), (202, Some(1)));
}

#[actix_rt::test]
async fn batch_limits_and_shape_are_enforced() {
    let node = start_node(&[("HERALD_INGEST__MAX_BATCH", "2")]).await;
    let three =
        json!({"messages": [{"to":"a","payload":1},{"to":"a","payload":1},{"to":"a","payload":1}]});
    let (s, v) = node
        .post("/api/v1/messages/batch", &three.to_string())
        .await;
    assert_eq!(s, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("messages"));
    let (s, _) = node
        .post("/api/v1/messages/batch", r#"{"messages":[]}"#)
        .await;
    assert_eq!(s, 400);
    let (s, v) = node.post("/api/v1/messages/batch", r#"{"msgs":[]}"#).await;
    assert_eq!(s, 400, "{v}");
}

#[actix_rt::test]
async fn invalid_user_in_path_and_unknown_paths_get_json_errors() {
    let node = start_node(&[]).await;
    let (s, v) = node.get("/api/v1/users/bad%20user/presence").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_user"))
    );
    let (s, v) = node.get("/api/v1/nothing").await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
}

#[actix_rt::test]
async fn health_and_readiness_answer_json() {
    let node = start_node(&[]).await;
    let (s, v) = http(&node.url("/healthz"), None, None).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")));
    let (s, v) = http(&node.url("/readyz"), None, None).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ready")));
}
