//! Session lifecycle: heartbeats, token expiry and refresh, slow consumers, bad frames,
//! and graceful drain.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[actix_rt::test]
async fn silent_client_is_closed_with_4008_and_unregistered() {
    let node = start_node(&[
        ("HERALD_SESSION__HEARTBEAT_MS", "100"),
        ("HERALD_SESSION__HEARTBEAT_TIMEOUT_MS", "400"),
    ])
    .await;
    let mut ws = node.connect("quiet", "").await;
    ws.welcome().await;
    eventually("online", || async { online(&node, "quiet").await }).await;
    // Not reading means not answering the server's pings: the session must time out.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let (code, reason) = ws.expect_close().await;
    assert_eq!(code, 4008, "{reason}");
    eventually("offline after timeout", || async {
        !online(&node, "quiet").await
    })
    .await;
    let (_, stats) = node.stats().await;
    assert_eq!(stats["counters"]["heartbeat_timeouts"], 1);
}

#[actix_rt::test]
async fn client_that_answers_pings_stays_connected_past_the_timeout() {
    let node = start_node(&[
        ("HERALD_SESSION__HEARTBEAT_MS", "100"),
        ("HERALD_SESSION__HEARTBEAT_TIMEOUT_MS", "400"),
    ])
    .await;
    let mut ws = node.connect("chatty", "").await;
    ws.welcome().await;
    // Reading lets the client library answer WebSocket pings; app pings get app pongs.
    for _ in 0..8 {
        ws.send_json(json!({"type": "ping"})).await;
        assert_eq!(ws.next_json().await["type"], "pong");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.send("chatty", json!("still here")).await;
    assert_eq!(ws.next_of_type("message").await["payload"], "still here");
}

/// The next two frames: a pong and an error (in either order); the error's code.
async fn pong_and_error(ws: &mut Ws) -> String {
    let (a, b) = (ws.next_json().await, ws.next_json().await);
    let (pong, error) = if a["type"] == "pong" { (a, b) } else { (b, a) };
    assert_eq!(pong["type"], "pong");
    assert_eq!(error["type"], "error", "{error}");
    error["code"].as_str().unwrap().to_string()
}

#[actix_rt::test]
async fn expiring_token_closes_with_4001_unless_refreshed_by_ping() {
    let node = start_node(&[
        ("HERALD_SESSION__HEARTBEAT_MS", "100"),
        ("HERALD_AUTH__LEEWAY_S", "0"),
    ])
    .await;
    let short = node.token("tim", 1);
    let mut stale = Ws::connect(&node.ws_url(&format!("token={short}&device=a")))
        .await
        .unwrap();
    let mut fresh = Ws::connect(&node.ws_url(&format!("token={short}&device=b")))
        .await
        .unwrap();
    stale.welcome().await;
    fresh.welcome().await;
    fresh
        .send_json(json!({"type": "ping", "token": node.token("tim", 3600)}))
        .await;
    assert_eq!(fresh.next_json().await["type"], "pong");
    // A refresh token for another user is refused without touching the session.
    fresh
        .send_json(json!({"type": "ping", "token": node.token("other", 3600)}))
        .await;
    // The pong does not wait for the token's verdict: the two come in either order.
    assert_eq!(pong_and_error(&mut fresh).await, "token_user_mismatch");
    let other_device = token_for(&node.cfg, "tim", Some("a"), 3600);
    fresh
        .send_json(json!({"type": "ping", "token": other_device}))
        .await;
    assert_eq!(pong_and_error(&mut fresh).await, "token_device_mismatch");
    // Keep both reading (answering pings) until the short token is past expiry.
    let (code, _) = stale.expect_close().await;
    assert_eq!(code, 4001);
    node.send("tim", json!("after expiry")).await;
    assert_eq!(
        fresh.next_of_type("message").await["payload"],
        "after expiry"
    );
}

#[actix_rt::test]
async fn slow_consumer_is_closed_with_4002_while_others_keep_receiving() {
    let node = start_node(&[("HERALD_SESSION__OUTBOUND_QUEUE", "16")]).await;
    let mut slow = node.connect("sam", "device=slow").await;
    let mut fast = node.connect("sam", "device=fast").await;
    slow.welcome().await;
    fast.welcome().await;
    eventually("both devices", || async {
        let (_, v) = node.get("/api/v1/users/sam/presence").await;
        v["devices"].as_array().unwrap().len() == 2
    })
    .await;
    // Large payloads fill the slow client's socket buffers quickly; the fast one reads.
    let big = "x".repeat(64 * 1024);
    let n = 120;
    let reader = actix_rt::spawn(async move {
        let seqs = fast.seqs(n).await;
        (fast, seqs)
    });
    for i in 0..n {
        node.send("sam", json!({"i": i, "pad": big})).await;
    }
    let (_fast, seqs) = reader.await.unwrap();
    assert_eq!(seqs, (1..=n as u64).collect::<Vec<_>>());
    eventually("slow consumer counted", || async {
        let (_, s) = node.stats().await;
        s["counters"]["slow_consumers"].as_u64().unwrap() >= 1
    })
    .await;
    eventually("slow device dropped", || async {
        let (_, v) = node.get("/api/v1/users/sam/presence").await;
        let devices = v["devices"].as_array().unwrap();
        devices.len() == 1 && devices[0]["device"] == "fast"
    })
    .await;
    // Whatever reached the slow client's buffers ends with the 4002 close (or a reset
    // when the close frame could not get through within the grace period).
    let (code, _) = slow.expect_close().await;
    assert!(code == 4002 || code == 1006, "got {code}");
}

#[actix_rt::test]
async fn unknown_and_malformed_frames_get_error_frames_and_the_session_stays_up() {
    let node = start_node(&[]).await;
    let mut ws = node.connect("val", "").await;
    ws.welcome().await;
    ws.send_text(r#"{"type":"subscribe","topic":"x"}"#).await;
    let e = ws.next_json().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("unknown_frame"))
    );
    ws.send_text("this is not json").await;
    assert_eq!(ws.next_json().await["code"], "bad_frame");
    ws.send_text(r#"{"type":"ack","seq":"three"}"#).await;
    assert_eq!(ws.next_json().await["code"], "bad_frame");
    ws.inner.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(ws.next_json().await["code"], "binary_not_supported");
    ws.send_json(json!({"type": "ping"})).await;
    assert_eq!(ws.next_json().await["type"], "pong");
    node.send("val", json!(1)).await;
    assert_eq!(ws.next_of_type("message").await["seq"], 1);
}

#[actix_rt::test]
async fn oversize_frame_closes_with_1009_and_the_server_stays_healthy() {
    let node = start_node(&[("HERALD_SESSION__MAX_FRAME_BYTES", "1024")]).await;
    let mut ws = node.connect("big", "").await;
    ws.welcome().await;
    ws.send_text(&format!(
        r#"{{"type":"ping","token":"{}"}}"#,
        "x".repeat(4096)
    ))
    .await;
    let (code, _) = ws.expect_close().await;
    assert_eq!(code, 1009);
    let (s, _) = http(&node.url("/healthz"), None, None).await;
    assert_eq!(s, 200);
    let mut again = node.connect("big", "").await;
    again.welcome().await;
}

#[actix_rt::test]
async fn ack_beyond_what_was_delivered_is_clamped() {
    let node = start_node(&[("HERALD_STORE__CURSOR_FLUSH_MS", "20")]).await;
    let mut ws = node.connect("ned", "device=d").await;
    ws.welcome().await;
    node.send("ned", json!(1)).await;
    assert_eq!(ws.seqs(1).await, vec![1]);
    ws.send_json(json!({"type": "ack", "seq": 1000})).await;
    ws.send_json(json!({"type": "ping"})).await;
    ws.next_of_type("pong").await;
    ws.close().await;
    node.send("ned", json!(2)).await;
    let mut ws = node.connect("ned", "device=d").await;
    ws.welcome().await;
    assert_eq!(ws.seqs(1).await, vec![2]);
}

#[actix_rt::test]
async fn drain_spreads_its_closes_over_time_at_the_configured_rate() {
    // 30 sessions at 15 closes/s: the closes take about 2 s, not one burst.
    let mut node = start_node(&[("HERALD_SERVER__DRAIN_CLOSE_RATE", "15")]).await;
    let mut clients = Vec::new();
    for i in 0..30 {
        let mut ws = node.connect(&format!("spread{i}"), "").await;
        ws.welcome().await;
        clients.push(ws);
    }
    eventually("online", || async { online(&node, "spread29").await }).await;
    let started = std::time::Instant::now();
    let drain = actix_rt::spawn(async move { node.node.shutdown().await });
    let closes = futures_util::future::join_all(clients.iter_mut().map(|ws| async move {
        let (code, _) = ws.expect_close().await;
        (code, started.elapsed())
    }))
    .await;
    assert!(closes.iter().all(|(code, _)| *code == 1012), "{closes:?}");
    let first = closes.iter().map(|c| c.1).min().unwrap();
    let last = closes.iter().map(|c| c.1).max().unwrap();
    assert!(
        last - first >= Duration::from_millis(1200),
        "closes spread over {:?} only",
        last - first
    );
    drain.await.unwrap();
}

#[actix_rt::test]
async fn drain_tells_sessions_to_reconnect_with_jitter_closes_1012_and_refuses_new_ones() {
    let mut node = start_node(&[
        ("HERALD_SERVER__DRAIN_DELAY_MS", "300"),
        ("HERALD_SERVER__DRAIN_RECONNECT_JITTER_MS", "750"),
    ])
    .await;
    let mut a = node.connect("oli", "device=a").await;
    let mut b = node.connect("pia", "").await;
    a.welcome().await;
    b.welcome().await;
    eventually("online", || async {
        online(&node, "oli").await && online(&node, "pia").await
    })
    .await;
    let addr = node.addr;
    let token = node.token("late", 60);
    let draining = node.node.state.clone();
    let ready_url = format!("http://{addr}/readyz");
    let drain = actix_rt::spawn(async move {
        node.node.shutdown().await;
    });
    // During the drain delay readiness is off while sessions are still served.
    eventually("readyz off", || async {
        http(&ready_url, None, None).await.0 == 503
    })
    .await;
    b.send_json(json!({"type": "ping"})).await;
    assert_eq!(b.next_json().await["type"], "pong");
    for ws in [&mut a, &mut b] {
        let notice = ws.next_json().await;
        assert_eq!(notice, json!({"type": "reconnect", "jitter_ms": 750}));
        let (code, reason) = ws.expect_close().await;
        assert_eq!(
            (code, reason.as_str()),
            (1012, "server restarting, reconnect")
        );
    }
    assert!(draining.draining.load(std::sync::atomic::Ordering::Relaxed));
    drain.await.unwrap();
    // After the drain the listener is gone.
    let refused = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={token}")).await;
    assert!(refused.is_err());
}

#[actix_rt::test]
async fn node_at_its_session_cap_refuses_new_sockets_with_503_and_keeps_serving() {
    let node = start_node(&[("HERALD_SERVER__MAX_SESSIONS", "2")]).await;
    let mut a = node.connect("cap", "device=a").await;
    let mut b = node.connect("cap", "device=b").await;
    a.welcome().await;
    b.welcome().await;
    let refused = Ws::connect(&node.ws_url(&format!("token={}&device=c", node.token("cap", 60))))
        .await
        .err()
        .expect("third session is refused");
    assert_eq!(
        (refused.status, refused.body["error"]["code"].as_str()),
        (503, Some("node_full"))
    );
    node.send("cap", json!("still served")).await;
    assert_eq!(a.next_of_type("message").await["payload"], "still served");
    b.close().await;
    eventually("room again", || async {
        Ws::connect(&node.ws_url(&format!("token={}&device=d", node.token("cap", 60))))
            .await
            .is_ok()
    })
    .await;
}

#[actix_rt::test]
async fn with_hub_shards_on_two_http_workers_users_of_both_get_their_messages_and_a_drain_closes_all(
) {
    let mut node = start_node(&[
        ("HERALD_SERVER__WORKERS", "2"),
        ("HERALD_SERVER__HUB_THREADS", "workers"),
    ])
    .await;
    let users: Vec<String> = (0..8).map(|i| format!("w{i}")).collect();
    let shards: std::collections::HashSet<usize> = users
        .iter()
        .map(|u| herald::actors::hub::shards::shard_of(&herald::ids::UserId::parse(u).unwrap(), 2))
        .collect();
    assert_eq!(shards.len(), 2, "the users span both shards");
    let mut clients = Vec::new();
    for u in &users {
        let mut ws = node.connect(u, "").await;
        ws.welcome().await;
        clients.push(ws);
    }
    for u in &users {
        eventually("online", || async { online(&node, u).await }).await;
        node.send(u, json!(format!("for {u}"))).await;
    }
    let body = json!({"broadcast": true, "payload": "all"}).to_string();
    assert_eq!(node.post("/api/v1/messages", &body).await.0, 202);
    for (u, ws) in users.iter().zip(&mut clients) {
        let m = ws.next_of_type("message").await;
        assert_eq!(
            (m["payload"].as_str(), m["seq"].as_u64()),
            (Some(&*format!("for {u}")), Some(1))
        );
        assert_eq!(ws.next_of_type("message").await["payload"], "all");
    }
    let drain = actix_rt::spawn(async move { node.node.shutdown().await });
    for ws in &mut clients {
        assert_eq!(ws.expect_close().await.0, 1012);
    }
    drain.await.unwrap();
}
