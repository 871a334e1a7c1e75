//! Admission limits against a real node (in-process, 127.0.0.1:0): sessions per user,
//! connect rate per client address (through a trusted proxy), requests and messages per
//! API key, and the request-body deadline. Each refusal is the documented status, code
//! and `Retry-After`; nothing refused is accepted; the node still delivers afterwards.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `head` (and `body` in `pieces`, `gap` apart) and reads the whole answer.
async fn raw(node: &TestNode, head: &str, pieces: &[&str], gap: Duration) -> String {
    let mut s = TcpStream::connect(node.addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    for p in pieces {
        tokio::time::sleep(gap).await;
        if s.write_all(p.as_bytes()).await.is_err() {
            break;
        }
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).to_string()
}

/// A WebSocket upgrade of `user` as if forwarded for `client`; answers the response head.
async fn upgrade_via_proxy(node: &TestNode, user: &str, client: &str) -> String {
    let head = format!(
        "GET /ws?token={} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         X-Forwarded-For: {client}\r\n\r\n",
        node.token(user, 3600)
    );
    let mut s = TcpStream::connect(node.addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).to_string()
}

async fn still_delivers(node: &TestNode, user: &str) {
    let mut ws = node.connect(user, "").await;
    node.send(user, json!("still here")).await;
    assert_eq!(ws.next_of_type("message").await["payload"], "still here");
}

#[actix_rt::test]
async fn a_user_past_max_sessions_per_user_is_refused_429_until_one_closes() {
    let node = start_node(&[("HERALD_SESSION__MAX_PER_USER", "2")]).await;
    let a = node.connect("sam", "device=a").await;
    let _b = node.connect("sam", "device=b").await;
    let refused = Ws::connect(&node.ws_url(&format!("token={}&device=c", node.token("sam", 60))))
        .await
        .err()
        .expect("third session refused");
    assert_eq!(refused.status, 429);
    assert_eq!(refused.body["error"]["code"], "too_many_sessions");
    let (_, stats) = node.stats().await;
    assert_eq!(stats["counters"]["sessions_refused_per_user"], 1);
    a.close().await;
    eventually("a slot is free again", || async {
        Ws::connect(&node.ws_url(&format!("token={}&device=c", node.token("sam", 60))))
            .await
            .is_ok()
    })
    .await;
    still_delivers(&node, "other").await;
}

#[actix_rt::test]
async fn connects_past_the_rate_of_one_client_behind_a_trusted_proxy_are_429_with_retry_after() {
    let node = start_node(&[
        ("HERALD_SERVER__LIMIT_LOOPBACK", "true"),
        ("HERALD_SERVER__CONNECT_RATE_PER_IP", "1"),
        ("HERALD_SERVER__CONNECT_BURST_PER_IP", "3"),
        ("HERALD_SERVER__TRUSTED_PROXIES", r#"["127.0.0.1"]"#),
    ])
    .await;
    for i in 0..3 {
        let head = upgrade_via_proxy(&node, &format!("c{i}"), "203.0.113.7").await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    }
    let head = upgrade_via_proxy(&node, "c4", "203.0.113.7").await;
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    assert!(head.contains("connect_rate_limited"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    // Another client behind the same proxy has its own budget.
    let head = upgrade_via_proxy(&node, "d1", "198.51.100.2").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (_, stats) = node.stats().await;
    assert_eq!(stats["counters"]["connects_rate_limited"], 1);
}

#[actix_rt::test]
async fn requests_past_an_api_keys_rate_are_429_with_retry_after_and_store_nothing() {
    let node = start_node(&[("HERALD_INGEST__KEY_REQUESTS_PER_S", "3")]).await;
    let mut ws = node.connect("kim", "").await;
    let body = json!({"to": "kim", "payload": 1}).to_string();
    for _ in 0..3 {
        assert_eq!(node.post("/api/v1/messages", &body).await.0, 202);
    }
    let head = format!(
        "POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = raw(&node, &head, &[], Duration::ZERO).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("\"rate_limited\""), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert_eq!(ws.seqs(3).await, vec![1, 2, 3]);
    let (_, stats) = node.stats().await;
    assert_eq!(
        stats["counters"]["accepted"], 3,
        "the refused one was not stored"
    );
    assert_eq!(stats["counters"]["requests_rate_limited"], 1);
}

#[actix_rt::test]
async fn a_batch_over_an_api_keys_message_rate_is_refused_whole() {
    let node = start_node(&[("HERALD_INGEST__KEY_MESSAGES_PER_S", "5")]).await;
    let batch = |n: usize| {
        let msgs: Vec<_> = (0..n).map(|i| json!({"to": "lee", "payload": i})).collect();
        json!({ "messages": msgs }).to_string()
    };
    assert_eq!(node.post("/api/v1/messages/batch", &batch(5)).await.0, 202);
    let (s, v) = node.post("/api/v1/messages/batch", &batch(2)).await;
    assert_eq!(s, 429, "{v}");
    assert_eq!(v["error"]["code"], "rate_limited");
    let (_, stats) = node.stats().await;
    assert_eq!(stats["counters"]["accepted"], 5);
}

#[actix_rt::test]
async fn a_trickled_request_body_is_408_at_the_deadline() {
    let node = start_node(&[("HERALD_INGEST__BODY_TIMEOUT_MS", "500")]).await;
    let body = json!({"to": "tia", "payload": "slow"}).to_string();
    let head = format!(
        "POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let pieces: Vec<String> = body.chars().map(String::from).collect();
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let started = Instant::now();
    let answer = raw(&node, &head, &pieces, Duration::from_millis(100)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let (_, stats) = node.stats().await;
    assert_eq!(stats["counters"]["body_timeouts"], 1);
    assert_eq!(stats["counters"]["accepted"], 0);
    still_delivers(&node, "tia").await;
}

#[actix_rt::test]
async fn a_deeply_nested_payload_is_400_and_ten_thousand_recipients_with_repeats_are_one_each() {
    let node = start_node(&[]).await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let body = format!(r#"{{"to":"dee","payload":{deep}}}"#);
    let (s, v) = node.post("/api/v1/messages", &body).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["code"], "payload_too_deep", "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ingest.max_payload_depth"));
    // 10 000 recipients, each named twice: deduplicated in linear time to 5 000.
    let users: Vec<String> = (0..10_000).map(|i| format!("r{}", i % 5000)).collect();
    let body = json!({"to": users, "payload": 1}).to_string();
    let (s, v) = node.post("/api/v1/messages", &body).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["recipients"], 5000);
    let (_, stats) = node.stats().await;
    assert_eq!(
        stats["counters"]["accepted"], 1,
        "the nested one was not stored"
    );
    assert_eq!(stats["counters"]["payload_too_deep"], 1);
}
