//! The internal listener under attack, against a real node: forged, stale, replayed and
//! case-altered signatures; bodies declared huge, sent over the cap or trickled; and the
//! largest genuine forwards still getting through.

use std::time::{Duration, Instant};

use herald::cluster::sign::{sign, HDR_NODE, HDR_SIG, HDR_TS};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::common::procs::{
    connect, redis_cmd, route_nodes, shared_redis, start_nodes, HeraldProc, SECRET,
};
use super::common::{eventually, WAIT};
use super::{cluster_env, send, unique_prefix};

/// The internal listener address node `id` advertises in the registry of the cluster that
/// `env` configures (the public listener never shows it).
async fn internal_address(env: &[(String, String)], id: &str) -> String {
    let var = |name: &str| env.iter().find(|(k, _)| k == name).unwrap().1.clone();
    let key = format!("{}:node:{id}", var("HERALD_ROUTES__KEY_PREFIX"));
    let reply = redis_cmd(&var("HERALD_ROUTES__REDIS_URL"), &["GET", &key]).await;
    // A bulk string: `$<len>\r\n<NodeInfo JSON>\r\n`.
    let json = reply.split("\r\n").nth(1).unwrap_or_default();
    let info: Value = serde_json::from_str(json).unwrap_or_else(|_| panic!("{key}: {reply:?}"));
    info["internal"].as_str().unwrap().to_string()
}

async fn refused_count(node: &HeraldProc) -> u64 {
    let (_, stats) = node.stats().await;
    stats["counters"]["internal_refused"].as_u64().unwrap()
}

/// A forward from node `from` of one forged message frame to `user`.
fn forward_body(from: &str, user: &str, id: &str) -> String {
    let frame =
        json!({"type": "message", "id": id, "seq": 1, "topic": null, "payload": "evil", "ts": 1});
    json!({"from": from, "deliveries": [{"user": user, "seq": 1, "frame": frame}], "broadcasts": []})
        .to_string()
}

/// Request headers, by name.
type Headers = Vec<(&'static str, String)>;

/// The signed headers of a request from `node` carrying `body`, signed now.
fn signed_headers(node: &str, body: &[u8]) -> Headers {
    let now = herald::clock::now_ms();
    vec![
        (HDR_NODE, node.to_string()),
        (HDR_TS, now.to_string()),
        (HDR_SIG, sign(SECRET.as_bytes(), now, node, body)),
    ]
}

/// Opens a connection to `internal` and writes the head of a deliver request declaring
/// `content_length`, then `body_start` (possibly far less than declared).
async fn open_post(
    internal: &str,
    headers: &[(&'static str, String)],
    content_length: usize,
    body_start: &[u8],
) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(internal).await.unwrap();
    let mut head = format!(
        "POST /internal/v1/deliver HTTP/1.1\r\nHost: {internal}\r\n\
         Content-Type: application/json\r\nContent-Length: {content_length}\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body_start).await.unwrap();
    s
}

/// Reads one answer (its head and its declared body, without waiting for the connection to
/// close): status and JSON body.
async fn read_answer(r: &mut (impl AsyncReadExt + Unpin)) -> (u16, Value) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
                let body = serde_json::from_slice(&buf[end + 4..end + 4 + len]).unwrap();
                return (status, body);
            }
        }
        let n = tokio::time::timeout_at(deadline, r.read(&mut chunk))
            .await
            .expect("an answer within the wait")
            .unwrap();
        assert!(n > 0, "connection closed before a full answer: {text:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[actix_rt::test]
async fn forged_stale_or_replayed_internal_requests_are_rejected() {
    let (url, _redis) = shared_redis();
    let env = cluster_env(&url, &unique_prefix("sign"), &[]);
    let nodes = start_nodes(&["a", "b"], &env).await;
    let mut ws = connect(&nodes[1], "ivy", "").await;
    let mut other = connect(&nodes[1], "jan", "").await;
    let internal = internal_address(&env, "b").await;
    let body = forward_body("a", "ivy", "forged");
    let client = awc::Client::default();
    let url = format!("http://{internal}/internal/v1/deliver");
    let post = |ts: u64, sig: String, node: &'static str| {
        client
            .post(&url)
            .insert_header((HDR_NODE, node))
            .insert_header((HDR_TS, ts.to_string()))
            .insert_header((HDR_SIG, sig))
            .content_type("application/json")
            .send_body(body.clone())
    };
    let now = herald::clock::now_ms();
    let unsigned = client.post(&url).send_body(body.clone()).await.unwrap();
    assert_eq!(unsigned.status().as_u16(), 401);
    let forged = post(
        now,
        sign(b"not-the-cluster-secret-123", now, "a", body.as_bytes()),
        "a",
    );
    assert_eq!(forged.await.unwrap().status().as_u16(), 401);
    let stale_ts = now - 120_000;
    let stale = post(
        stale_ts,
        sign(SECRET.as_bytes(), stale_ts, "a", body.as_bytes()),
        "a",
    );
    assert_eq!(stale.await.unwrap().status().as_u16(), 401);
    // Correctly signed as "c", but the body claims to come from "a".
    let posing = post(now, sign(SECRET.as_bytes(), now, "c", body.as_bytes()), "c");
    assert_eq!(posing.await.unwrap().status().as_u16(), 401);
    // A genuine request is accepted once; the identical request replayed is refused.
    let good_sig = sign(SECRET.as_bytes(), now, "a", body.as_bytes());
    let first = post(now, good_sig.clone(), "a").await.unwrap();
    assert_eq!(first.status().as_u16(), 200);
    let replay = post(now, good_sig, "a").await.unwrap();
    assert_eq!(replay.status().as_u16(), 401);
    // Only the one genuine delivery reached the client.
    let m = ws.next_of_type("message").await;
    assert_eq!(
        (m["id"].as_str(), m["seq"].as_u64()),
        (Some("forged"), Some(1))
    );
    // The node keeps forwarding genuine traffic.
    eventually("route to b", || async {
        route_nodes(&nodes[0], "jan").await == ["b"]
    })
    .await;
    send(&nodes[0], "jan", json!("real")).await;
    assert_eq!(other.next_of_type("message").await["payload"], "real");
    ws.send_json(json!({"type": "ping"})).await;
    assert_eq!(
        ws.next_json().await["type"],
        "pong",
        "no second copy of the replayed request"
    );
    assert_eq!(refused_count(&nodes[1]).await, 5);
}

#[actix_rt::test]
async fn replay_with_the_signature_in_upper_or_mixed_case_is_refused_and_not_delivered_twice() {
    let (url, _redis) = shared_redis();
    let env = cluster_env(&url, &unique_prefix("case"), &[]);
    let nodes = start_nodes(&["b"], &env).await;
    let mut ws = connect(&nodes[0], "kim", "").await;
    let internal = internal_address(&env, "b").await;
    let body = forward_body("a", "kim", "once");
    let headers = signed_headers("a", body.as_bytes());
    let sig = headers[2].1.clone();
    let mixed: String = sig
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    assert_ne!(mixed, sig, "the signature has letters to change");
    let with_sig = |s: &str| {
        let mut h = headers.clone();
        h[2].1 = s.to_string();
        h
    };
    let mut answers = Vec::new();
    for s in [sig.clone(), sig.to_uppercase(), mixed] {
        let mut conn = open_post(&internal, &with_sig(&s), body.len(), body.as_bytes()).await;
        answers.push(read_answer(&mut conn).await);
    }
    assert_eq!(answers[0].0, 200, "{:?}", answers[0].1);
    for (status, v) in &answers[1..] {
        assert_eq!(*status, 401, "{v}");
        assert_eq!(v["error"]["code"], "unauthorized");
    }
    let m = ws.next_of_type("message").await;
    assert_eq!(m["id"], "once");
    ws.send_json(json!({"type": "ping"})).await;
    assert_eq!(ws.next_json().await["type"], "pong", "delivered once only");
    assert_eq!(refused_count(&nodes[0]).await, 2);
}

#[actix_rt::test]
async fn requests_declaring_a_huge_body_are_refused_before_it_is_sent() {
    let (url, _redis) = shared_redis();
    // A body deadline far away: an answer now cannot be the deadline's.
    let slow = [("HERALD_CLUSTER__INTERNAL_BODY_TIMEOUT_MS", "60000")];
    let env = cluster_env(&url, &unique_prefix("huge"), &slow);
    let nodes = start_nodes(&["b"], &env).await;
    let internal = internal_address(&env, "b").await;
    let declared = 60 * 1024 * 1024;
    let start = b"{\"from\":\"a\",";
    let good = signed_headers("a", b"the body that will never come");
    let with = |i: usize, v: &str| {
        let mut h = good.clone();
        h[i].1 = v.to_string();
        h
    };
    let stale = (herald::clock::now_ms() - 120_000).to_string();
    // What is wrong, the headers, the expected status and error code.
    let cases: Vec<(&str, Headers, u16, &str)> = vec![
        ("unsigned", vec![], 401, "unauthorized"),
        ("bad node id", with(0, "no way!"), 401, "unauthorized"),
        ("stale", with(1, &stale), 401, "unauthorized"),
        ("short signature", with(2, "abc123"), 401, "unauthorized"),
        (
            "upper case",
            with(2, &good[2].1.to_uppercase()),
            401,
            "unauthorized",
        ),
        // Well-formed, so only the body can tell it is forged: its size refuses it first.
        ("forged, well-formed", good.clone(), 413, "body_too_large"),
    ];
    for (what, headers, status, code) in cases {
        let started = Instant::now();
        let mut conn = open_post(&internal, &headers, declared, start).await;
        let (s, v) = read_answer(&mut conn).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{what}: {v}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{what}: answered after {:?}",
            started.elapsed()
        );
    }
    assert_eq!(refused_count(&nodes[0]).await, 6);
}

/// The receiver's body cap for nodes with `ingest.max_body_bytes = max_body`.
fn body_cap(max_body: usize) -> usize {
    use herald::cluster::forward::FORWARD_BATCH;
    FORWARD_BATCH.max_body(herald::frames::max_message_frame(max_body))
}

#[actix_rt::test]
async fn signed_body_over_the_cap_is_refused_with_413_declared_or_streamed() {
    let (url, _redis) = shared_redis();
    let small = [("HERALD_INGEST__MAX_BODY_BYTES", "1024")];
    let env = cluster_env(&url, &unique_prefix("cap"), &small);
    let nodes = start_nodes(&["b"], &env).await;
    let internal = internal_address(&env, "b").await;
    let body = bytes::Bytes::from(vec![b'x'; body_cap(1024) + 1]);
    let url = format!("http://{internal}/internal/v1/deliver");
    let client = awc::Client::builder().timeout(WAIT).finish();
    let request = || {
        let mut r = client.post(&url).content_type("application/json");
        for h in signed_headers("a", &body) {
            r = r.insert_header(h);
        }
        r
    };
    // With Content-Length: refused from the header.
    let mut resp = request().send_body(body.clone()).await.unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "body_too_large");
    // Chunked, no length given: refused once the bytes read cross the cap.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = body
        .chunks(64 * 1024)
        .map(|c| Ok(body.slice_ref(c)))
        .collect();
    let resp = request()
        .send_stream(futures_util::stream::iter(chunks))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    assert_eq!(refused_count(&nodes[0]).await, 2);
}

#[actix_rt::test]
async fn trickled_body_is_refused_with_408_at_the_deadline() {
    let (url, _redis) = shared_redis();
    let deadline = [("HERALD_CLUSTER__INTERNAL_BODY_TIMEOUT_MS", "600")];
    let env = cluster_env(&url, &unique_prefix("trickle"), &deadline);
    let nodes = start_nodes(&["b"], &env).await;
    let internal = internal_address(&env, "b").await;
    let body = forward_body("a", "lee", "slow");
    let started = Instant::now();
    let conn = open_post(
        &internal,
        &signed_headers("a", body.as_bytes()),
        body.len(),
        b"",
    )
    .await;
    let (mut r, mut w) = conn.into_split();
    let bytes = body.into_bytes();
    let writer = tokio::spawn(async move {
        for b in bytes {
            if w.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let (s, v) = read_answer(&mut r).await;
    let took = started.elapsed();
    writer.abort();
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (408, Some("body_timeout")),
        "{v}"
    );
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "answered after {took:?}"
    );
    assert_eq!(refused_count(&nodes[0]).await, 1);
}

#[actix_rt::test]
async fn messages_at_the_ingest_limit_cross_nodes_in_batches_under_the_receivers_cap() {
    let (url, _redis) = shared_redis();
    let env = cluster_env(&url, &unique_prefix("big"), &[]);
    let nodes = start_nodes(&["a", "b"], &env).await;
    let users = ["m1", "m2", "m3", "m4", "m5"];
    let mut sockets = Vec::new();
    for u in users {
        sockets.push(connect(&nodes[1], u, "").await);
    }
    eventually("routes to b", || async {
        for u in users {
            if route_nodes(&nodes[0], u).await != ["b"] {
                return false;
            }
        }
        true
    })
    .await;
    // One message near the 1 MiB ingest limit to five users on b: five ~1 MiB envelopes,
    // more than one batch's byte budget, so the sender must split them.
    let payload = "p".repeat(1024 * 1024 - 200);
    let body = json!({"to": users, "payload": payload}).to_string();
    let (s, v) = nodes[0].post("/api/v1/messages", &body).await;
    assert_eq!(s, 202, "{v}");
    for ws in &mut sockets {
        let m = ws.next_of_type("message").await;
        assert_eq!(m["payload"].as_str().map(str::len), Some(payload.len()));
    }
    eventually("a counts the five envelopes forwarded", || async {
        let (_, stats) = nodes[0].stats().await;
        stats["counters"]["forwarded"] == 5
    })
    .await;
    let (_, stats) = nodes[0].stats().await;
    assert_eq!(stats["counters"]["forward_failures"], 0);
    assert_eq!(refused_count(&nodes[1]).await, 0);
}
