//! The WebSocket upgrade as raw bytes on a TCP socket: what the node answers when the
//! HTTP/1 dispatcher hands it an upgrade request, and how a session's socket ends.

mod common;

use std::time::Duration;

use actix_codec::{Decoder, Encoder};
use actix_http::ws::{Codec, Frame, Message};
use bytes::BytesMut;
use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A masked client text frame.
fn client_text(text: &str) -> BytesMut {
    let mut buf = BytesMut::new();
    Codec::new()
        .client_mode()
        .encode(Message::Text(text.into()), &mut buf)
        .unwrap();
    buf
}

/// A connection to `node` that has sent `bytes` (a request, and whatever follows it).
async fn send(node: &TestNode, bytes: &[u8]) -> TcpStream {
    let mut sock = TcpStream::connect(node.addr).await.unwrap();
    sock.write_all(bytes).await.unwrap();
    sock
}

/// Reads until the end of the HTTP head; returns the head and what followed it.
async fn read_head(sock: &mut TcpStream) -> (String, BytesMut) {
    let mut buf = BytesMut::new();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buf.split_to(end + 4).to_vec()).unwrap();
            return (head, buf);
        }
        let n = tokio::time::timeout(Duration::from_secs(5), sock.read_buf(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(n > 0, "connection closed before the head ended: {buf:?}");
    }
}

/// The next server frame, reading more as needed; `None` once the server closed its side.
async fn next_frame(sock: &mut TcpStream, buf: &mut BytesMut) -> Option<Frame> {
    let mut codec = Codec::new().client_mode();
    loop {
        if let Some(f) = codec.decode(buf).unwrap() {
            return Some(f);
        }
        let n = tokio::time::timeout(Duration::from_secs(5), sock.read_buf(buf))
            .await
            .expect("a frame within 5 s")
            .unwrap();
        if n == 0 {
            return None;
        }
    }
}

async fn next_json(sock: &mut TcpStream, buf: &mut BytesMut) -> Value {
    loop {
        match next_frame(sock, buf).await {
            Some(Frame::Text(t)) => return serde_json::from_slice(&t).unwrap(),
            Some(Frame::Ping(_) | Frame::Pong(_)) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

#[actix_rt::test]
async fn an_upgrade_to_another_path_gets_the_json_404_and_the_connection_closes() {
    let node = start_node(&[]).await;
    let mut sock = send(&node, upgrade_request("/nope").as_bytes()).await;
    let (head, body) = read_head(&mut sock).await;
    assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    let mut body = body.to_vec();
    tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut body))
        .await
        .expect("the node closes the connection")
        .unwrap();
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"]["code"], "not_found");
}

#[actix_rt::test]
async fn a_refused_upgrade_is_a_whole_response_with_its_length_and_leaves_no_session() {
    let node = start_node(&[]).await;
    let mut sock = send(&node, upgrade_request("/ws?token=not-a-token").as_bytes()).await;
    let (head, mut body) = read_head(&mut sock).await;
    assert!(head.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a content-length")
        .parse()
        .unwrap();
    while body.len() < len {
        assert!(sock.read_buf(&mut body).await.unwrap() > 0);
    }
    let json: Value = serde_json::from_slice(&body[..len]).unwrap();
    assert_eq!(json["error"]["code"], "token_invalid");
    let (_, stats) = node.stats().await;
    assert_eq!(stats["counters"]["sessions_live"], 0);
}

#[actix_rt::test]
async fn frames_sent_with_the_upgrade_request_are_answered_after_the_welcome() {
    let node = start_node(&[]).await;
    // The request and the client's first frame leave in one write: the frame arrives in the
    // same read as the request and must not be lost with the HTTP buffers.
    let mut bytes =
        upgrade_request(&format!("/ws?token={}", node.token("early", 3600))).into_bytes();
    bytes.extend_from_slice(&client_text(r#"{"type":"ping"}"#));
    let mut sock = send(&node, &bytes).await;
    let (head, mut rest) = read_head(&mut sock).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    let mut types = vec![
        next_json(&mut sock, &mut rest).await["type"].clone(),
        next_json(&mut sock, &mut rest).await["type"].clone(),
    ];
    types.sort_by_key(|t| t.to_string());
    assert_eq!(types, ["pong", "welcome"]);
}

#[actix_rt::test]
async fn after_the_close_handshake_the_node_ends_its_side_of_the_connection() {
    // A grace period far longer than the reads below wait: the end of the stream they see
    // is the node's half-close after its close frame, not the grace period dropping it.
    let node = start_node(&[("HERALD_SESSION__CLOSE_GRACE_MS", "30000")]).await;
    let req = upgrade_request(&format!("/ws?token={}", node.token("closer", 3600)));
    let mut sock = send(&node, req.as_bytes()).await;
    let (_, mut rest) = read_head(&mut sock).await;
    assert_eq!(next_json(&mut sock, &mut rest).await["type"], "welcome");
    let mut close = BytesMut::new();
    Codec::new()
        .client_mode()
        .encode(Message::Close(None), &mut close)
        .unwrap();
    sock.write_all(&close).await.unwrap();
    loop {
        match next_frame(&mut sock, &mut rest).await {
            Some(Frame::Close(reason)) => {
                assert_eq!(reason.map(|r| u16::from(r.code)), Some(1000));
                break;
            }
            Some(_) => continue,
            None => panic!("the connection ended before the close frame"),
        }
    }
    // The node half-closes after its close frame: the client reads the end of the stream.
    assert!(next_frame(&mut sock, &mut rest).await.is_none());
    // Once the client closes too, the session ends.
    drop(sock);
    eventually("the session is gone", || async {
        let (_, s) = node.stats().await;
        s["counters"]["sessions_live"] == 0
    })
    .await;
}
