//! Delivery semantics on one node: fan-out to devices, per-user order, resume with `since`
//! and with the ack cursor, replay/live merge, broadcast, idempotency.

mod common;

use common::*;
use serde_json::json;

#[actix_rt::test]
async fn both_devices_of_a_user_receive_each_message_once_in_order() {
    let node = start_node(&[]).await;
    let mut phone = node.connect("alice", "device=phone").await;
    let mut laptop = node.connect("alice", "device=laptop").await;
    phone.welcome().await;
    laptop.welcome().await;
    eventually("both devices present", || async {
        let (_, v) = node.get("/api/v1/users/alice/presence").await;
        v["devices"].as_array().unwrap().len() == 2
    })
    .await;
    for i in 0..5 {
        node.send("alice", json!({"n": i})).await;
    }
    for ws in [&mut phone, &mut laptop] {
        let mut payloads = Vec::new();
        for expect_seq in 1..=5u64 {
            let m = ws.next_of_type("message").await;
            assert_eq!(m["seq"], expect_seq);
            payloads.push(m["payload"]["n"].as_u64().unwrap());
        }
        assert_eq!(payloads, vec![0, 1, 2, 3, 4]);
    }
}

#[actix_rt::test]
async fn message_for_another_user_is_not_delivered() {
    let node = start_node(&[]).await;
    let mut bob = node.connect("bob", "").await;
    bob.welcome().await;
    node.send("carol", json!("for carol")).await;
    node.send("bob", json!("for bob")).await;
    let m = bob.next_of_type("message").await;
    assert_eq!(m["payload"], "for bob");
    assert_eq!(m["seq"], 1);
}

#[actix_rt::test]
async fn message_to_a_list_reaches_every_listed_user_with_their_own_seq() {
    let node = start_node(&[]).await;
    node.send("u2", json!("warm-up")).await;
    let mut u1 = node.connect("u1", "").await;
    let mut u2 = node.connect("u2", "since=1").await;
    u1.welcome().await;
    u2.welcome().await;
    let (s, v) = node
        .post(
            "/api/v1/messages",
            &json!({"to": ["u1", "u2", "u1"], "topic": "t", "payload": {"x": 1}}).to_string(),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["recipients"], 2);
    let a = u1.next_of_type("message").await;
    let b = u2.next_of_type("message").await;
    assert_eq!((a["seq"].as_u64(), b["seq"].as_u64()), (Some(1), Some(2)));
    assert_eq!(a["id"], b["id"]);
    assert_eq!(a["id"], v["id"]);
    assert_eq!(a["topic"], "t");
}

#[actix_rt::test]
async fn resume_with_since_delivers_exactly_what_was_missed() {
    let node = start_node(&[]).await;
    let mut ws = node.connect("dana", "device=d").await;
    ws.welcome().await;
    for i in 0..3 {
        node.send("dana", json!(i)).await;
    }
    assert_eq!(ws.seqs(3).await, vec![1, 2, 3]);
    ws.close().await;
    for i in 3..6 {
        node.send("dana", json!(i)).await;
    }
    let mut ws = node.connect("dana", "device=d&since=3").await;
    assert_eq!(ws.welcome().await["last_seq"], 6);
    assert_eq!(ws.seqs(3).await, vec![4, 5, 6]);
    node.send("dana", json!(6)).await;
    assert_eq!(ws.seqs(1).await, vec![7]);
}

#[actix_rt::test]
async fn offline_device_resumes_from_its_ack_cursor() {
    let node = start_node(&[("HERALD_STORE__CURSOR_FLUSH_MS", "20")]).await;
    let mut ws = node.connect("erin", "device=tab").await;
    ws.welcome().await;
    for i in 0..3 {
        node.send("erin", json!(i)).await;
    }
    assert_eq!(ws.seqs(3).await, vec![1, 2, 3]);
    // Handled only the first two before going offline.
    ws.send_json(json!({"type": "ack", "seq": 2})).await;
    ws.send_json(json!({"type": "ping"})).await;
    ws.next_of_type("pong").await;
    ws.close().await;
    node.send("erin", json!(3)).await;
    let mut ws = node.connect("erin", "device=tab").await;
    ws.welcome().await;
    assert_eq!(ws.seqs(2).await, vec![3, 4]);
    // Another device of the same user has its own cursor: it never acked, so it gets all.
    let mut other = node.connect("erin", "device=phone").await;
    other.welcome().await;
    assert_eq!(other.seqs(4).await, vec![1, 2, 3, 4]);
}

#[actix_rt::test]
async fn first_connection_of_a_user_receives_messages_sent_while_offline() {
    let node = start_node(&[]).await;
    for i in 0..4 {
        node.send("fay", json!(i)).await;
    }
    let mut ws = node.connect("fay", "").await;
    assert_eq!(ws.welcome().await["last_seq"], 4);
    assert_eq!(ws.seqs(4).await, vec![1, 2, 3, 4]);
}

#[actix_rt::test]
async fn messages_sent_during_replay_arrive_once_and_in_order() {
    let node = start_node(&[]).await;
    for i in 0..200 {
        node.send("gus", json!(i)).await;
    }
    // Connect while a producer keeps sending: replayed and live messages must interleave
    // with no gap, duplicate or reordering.
    let producer = {
        let url = node.url("/api/v1/messages");
        actix_rt::spawn(async move {
            for i in 200..400 {
                let body = json!({"to": "gus", "payload": i}).to_string();
                let (s, _) = http(&url, Some(&body), Some(API_KEY)).await;
                assert_eq!(s, 202);
            }
        })
    };
    let mut ws = node.connect("gus", "").await;
    ws.welcome().await;
    let seqs = ws.seqs(400).await;
    producer.await.unwrap();
    assert_eq!(seqs, (1..=400).collect::<Vec<u64>>());
}

#[actix_rt::test]
async fn replay_beyond_the_limit_sends_history_truncated_then_the_newest() {
    let node = start_node(&[("HERALD_SESSION__REPLAY_LIMIT", "5")]).await;
    for i in 0..12 {
        node.send("hal", json!(i)).await;
    }
    let mut ws = node.connect("hal", "since=2").await;
    ws.welcome().await;
    let t = ws.next_json().await;
    assert_eq!(t["type"], "history_truncated", "{t}");
    assert_eq!(t["after"], 2);
    assert_eq!(t["resume_from"], 8);
    assert_eq!(ws.seqs(5).await, vec![8, 9, 10, 11, 12]);
}

#[actix_rt::test]
async fn store_retention_bound_is_reported_as_truncated_history() {
    let node = start_node(&[("HERALD_STORE__MAX_MESSAGES_PER_USER", "3")]).await;
    for i in 0..6 {
        node.send("ike", json!(i)).await;
    }
    let mut ws = node.connect("ike", "since=0").await;
    ws.welcome().await;
    let t = ws.next_json().await;
    assert_eq!(t["type"], "history_truncated");
    assert_eq!(t["resume_from"], 4);
    assert_eq!(ws.seqs(3).await, vec![4, 5, 6]);
}

#[actix_rt::test]
async fn broadcast_reaches_every_connected_session_without_a_seq() {
    let node = start_node(&[]).await;
    let mut a = node.connect("a1", "").await;
    let mut b = node.connect("b1", "").await;
    a.welcome().await;
    b.welcome().await;
    eventually("both online", || async {
        online(&node, "a1").await && online(&node, "b1").await
    })
    .await;
    let (s, v) = node
        .post(
            "/api/v1/messages",
            &json!({"broadcast": true, "payload": "hi all"}).to_string(),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    for ws in [&mut a, &mut b] {
        let m = ws.next_of_type("message").await;
        assert_eq!(m["payload"], "hi all");
        assert_eq!(m["broadcast"], true);
        assert!(m["seq"].is_null());
        assert_eq!(m["id"], v["id"]);
    }
    // Broadcasts are live only: a later connection does not get it replayed.
    node.send("a1", json!("after")).await;
    let mut late = node.connect("a1", "device=late").await;
    late.welcome().await;
    let m = late.next_of_type("message").await;
    assert_eq!(m["payload"], "after");
}

#[actix_rt::test]
async fn idempotent_retry_returns_the_first_id_and_delivers_once() {
    let node = start_node(&[]).await;
    let mut ws = node.connect("jo", "").await;
    ws.welcome().await;
    let body = json!({"to": "jo", "payload": 1, "idempotency_key": "order-77"}).to_string();
    let (s1, v1) = node.post("/api/v1/messages", &body).await;
    let (s2, v2) = node.post("/api/v1/messages", &body).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(v1["id"], v2["id"]);
    assert_eq!(v2["duplicate"], true);
    assert!(v1.get("duplicate").is_none());
    node.send("jo", json!(2)).await;
    let first = ws.next_of_type("message").await;
    let second = ws.next_of_type("message").await;
    assert_eq!(
        (first["payload"].as_u64(), second["payload"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(second["seq"], 2);
}

#[actix_rt::test]
async fn expired_messages_are_not_replayed() {
    let node = start_node(&[]).await;
    let (s, _) = node
        .post(
            "/api/v1/messages",
            &json!({"to": "kim", "payload": "short", "ttl_s": 1}).to_string(),
        )
        .await;
    assert_eq!(s, 202);
    node.send("kim", json!("long")).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut ws = node.connect("kim", "").await;
    ws.welcome().await;
    let m = ws.next_of_type("message").await;
    assert_eq!(m["payload"], "long");
    assert_eq!(m["seq"], 2);
}

#[actix_rt::test]
async fn history_and_presence_apis_report_stored_messages_and_devices() {
    let node = start_node(&[]).await;
    for i in 0..3 {
        node.send("lee", json!({"i": i})).await;
    }
    let (s, v) = node.get("/api/v1/users/lee/messages?since=1&limit=5").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["last_seq"], 3);
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(
        msgs.iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(msgs[1]["payload"]["i"], 2);
    let (s, v) = node.get("/api/v1/users/lee/messages?limit=0").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_field"))
    );
    assert!(!online(&node, "lee").await);
    let mut ws = node.connect("lee", "device=watch").await;
    ws.welcome().await;
    eventually("lee online", || async { online(&node, "lee").await }).await;
    let (_, v) = node.get("/api/v1/users/lee/presence").await;
    assert_eq!(v["devices"][0]["device"], "watch");
    ws.close().await;
    eventually("lee offline", || async { !online(&node, "lee").await }).await;
}

#[actix_rt::test]
async fn long_replay_is_paged_through_a_small_outbound_queue_with_live_traffic() {
    let node = start_node(&[
        ("HERALD_SESSION__OUTBOUND_QUEUE", "16"),
        ("HERALD_SESSION__REPLAY_LIMIT", "5000"),
        ("HERALD_STORE__MAX_MESSAGES_PER_USER", "5000"),
    ])
    .await;
    let batch: Vec<_> = (0..900)
        .map(|i| json!({"to": "pat", "payload": i}))
        .collect();
    let (s, _) = node
        .post(
            "/api/v1/messages/batch",
            &json!({ "messages": batch }).to_string(),
        )
        .await;
    assert_eq!(s, 202);
    let producer = {
        let url = node.url("/api/v1/messages");
        actix_rt::spawn(async move {
            for i in 900..1000 {
                let body = json!({"to": "pat", "payload": i}).to_string();
                assert_eq!(http(&url, Some(&body), Some(API_KEY)).await.0, 202);
            }
        })
    };
    let mut ws = node.connect("pat", "").await;
    ws.welcome().await;
    let seqs = ws.seqs(1000).await;
    producer.await.unwrap();
    assert_eq!(seqs, (1..=1000).collect::<Vec<u64>>());
    let (_, stats) = node.stats().await;
    assert_eq!(stats["counters"]["slow_consumers"], 0);
}
