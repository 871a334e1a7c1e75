//! Shared test harness: real nodes on 127.0.0.1:0, real WebSocket and HTTP clients,
//! and polling with a deadline instead of fixed sleeps.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use herald::auth::TokenMinter;
use herald::config::Config;
use herald::ids::{DeviceId, UserId};
use herald::server::Node;
use serde_json::Value;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

pub mod auth_endpoint;
pub mod lb;
pub mod mongo_proc;
pub mod procs;

pub const SECRET: &str = "test-secret-0123456789abcdef";
pub const API_KEY: &str = "test-api-key-1";
/// Operator key of test nodes, for `GET /api/v1/stats`.
pub const ADMIN_KEY: &str = "test-admin-key-1";
/// Longest a test waits for any single expected event.
pub const WAIT: Duration = Duration::from_secs(10);

/// Config for a test node: the shared secret, API key and admin key, one worker, plus `overrides`
/// given as `HERALD_SECTION__KEY` pairs.
pub fn config(overrides: &[(&str, &str)]) -> Config {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("HERALD_AUTH__JWT_SECRET".into(), SECRET.into());
    env.insert("HERALD_AUTH__API_KEYS".into(), format!("[\"{API_KEY}\"]"));
    env.insert(
        "HERALD_AUTH__ADMIN_KEYS".into(),
        format!("[\"{ADMIN_KEY}\"]"),
    );
    env.insert("HERALD_SERVER__WORKERS".into(), "1".into());
    env.insert("HERALD_SERVER__SHUTDOWN_TIMEOUT_S".into(), "3".into());
    env.insert("HERALD_LOG__LEVEL".into(), "warn".into());
    for (k, v) in overrides {
        env.insert(k.to_string(), v.to_string());
    }
    Config::from_sources("", &env).expect("test config")
}

/// A node running inside the test's actix system.
pub struct TestNode {
    pub node: Node,
    pub addr: SocketAddr,
    pub cfg: Config,
}

pub async fn start_node(overrides: &[(&str, &str)]) -> TestNode {
    let cfg = config(overrides);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let node = herald::server::start(cfg.clone(), listener)
        .await
        .expect("node starts");
    let addr = node.addr;
    TestNode { node, addr, cfg }
}

/// A node whose message store the test built (and may have instrumented).
pub async fn start_node_with_store(
    overrides: &[(&str, &str)],
    store: std::sync::Arc<dyn herald::store::MessageStore>,
) -> TestNode {
    let cfg = config(overrides);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let node = herald::server::start_with_store(cfg.clone(), listener, store)
        .await
        .expect("node starts");
    let addr = node.addr;
    TestNode { node, addr, cfg }
}

impl TestNode {
    pub fn token(&self, user: &str, ttl_s: u64) -> String {
        token_for(&self.cfg, user, None, ttl_s)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/ws?{}", self.addr, query)
    }

    /// Connects `user` with a fresh token; `extra` is appended to the query.
    pub async fn connect(&self, user: &str, extra: &str) -> Ws {
        let q = format!("token={}&{}", self.token(user, 3600), extra);
        Ws::connect(&self.ws_url(&q))
            .await
            .expect("websocket connects")
    }

    /// POST with the API key; returns status and JSON body.
    pub async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        http(&self.url(path), Some(body), Some(API_KEY)).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        http(&self.url(path), None, Some(API_KEY)).await
    }

    /// `GET /api/v1/stats` with the admin key.
    pub async fn stats(&self) -> (u16, Value) {
        http(&self.url("/api/v1/stats"), None, Some(ADMIN_KEY)).await
    }

    /// Posts one message to `to` and returns its id.
    pub async fn send(&self, to: &str, payload: Value) -> String {
        let body = serde_json::json!({"to": to, "payload": payload}).to_string();
        let (status, v) = self.post("/api/v1/messages", &body).await;
        assert_eq!(status, 202, "{v}");
        v["id"].as_str().unwrap().to_string()
    }
}

pub fn token_for(cfg: &Config, user: &str, device: Option<&str>, ttl_s: u64) -> String {
    let m = TokenMinter::from_config(&cfg.auth).unwrap();
    let d = device.map(|d| DeviceId::parse(d).unwrap());
    m.mint(&UserId::parse(user).unwrap(), d.as_ref(), ttl_s)
}

/// A minimal HTTP/1.1 request over a fresh TCP connection (no client-side limits or
/// rewriting, so tests see exactly what the server answers).
pub async fn http(url: &str, body: Option<&str>, api_key: Option<&str>) -> (u16, Value) {
    let (status, text) = http_raw(url, body, api_key).await;
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

pub async fn http_raw(url: &str, body: Option<&str>, api_key: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    let method = if body.is_some() { "POST" } else { "GET" };
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(k) = api_key {
        req.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    if let Some(b) = body {
        // The server may answer (413) and close before reading a large body.
        let _ = s.write_all(b.as_bytes()).await;
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let head_end = text.find("\r\n\r\n").map_or(text.len(), |i| i + 4);
    let mut body = text[head_end..].to_string();
    if text[..head_end]
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some(line_end) = s.find("\r\n") {
        let n = usize::from_str_radix(s[..line_end].trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&s[line_end + 2..line_end + 2 + n]);
        s = &s[line_end + 2 + n + 2..];
    }
    out
}

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client speaking the Herald protocol.
pub struct Ws {
    pub inner: Stream,
}

/// How a connection attempt was refused before the upgrade.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: Value,
}

impl Ws {
    pub async fn connect(url: &str) -> Result<Ws, Refused> {
        use tokio_tungstenite::tungstenite::Error;
        match tokio_tungstenite::connect_async(url).await {
            Ok((inner, _)) => Ok(Ws { inner }),
            Err(Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let body = resp
                    .body()
                    .as_ref()
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or(Value::Null);
                Err(Refused { status, body })
            }
            Err(e) => panic!("websocket connect failed: {e}"),
        }
    }

    pub async fn send_json(&mut self, v: Value) {
        self.inner.send(Message::text(v.to_string())).await.unwrap();
    }

    pub async fn send_text(&mut self, s: &str) {
        self.inner.send(Message::text(s.to_string())).await.unwrap();
    }

    /// The next JSON text frame (pings/pongs skipped); panics on close or timeout.
    pub async fn next_json(&mut self) -> Value {
        match self.next_event().await {
            Event::Json(v) => v,
            Event::Closed(code, reason) => panic!("closed {code} {reason} while expecting a frame"),
        }
    }

    /// The next JSON frame of `type`, skipping others of different types.
    pub async fn next_of_type(&mut self, ty: &str) -> Value {
        loop {
            let v = self.next_json().await;
            if v["type"] == ty {
                return v;
            }
        }
    }

    /// Waits for the close frame, skipping data frames; returns (code, reason).
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            if let Event::Closed(code, reason) = self.next_event().await {
                return (code, reason);
            }
        }
    }

    pub async fn next_event(&mut self) -> Event {
        loop {
            let msg = tokio::time::timeout(WAIT, self.inner.next())
                .await
                .expect("timed out waiting for a websocket frame");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return Event::Json(serde_json::from_str(&t).expect("server frames are JSON"))
                }
                Some(Ok(Message::Close(Some(f)))) => {
                    return Event::Closed(u16::from(f.code), f.reason.to_string())
                }
                Some(Ok(Message::Close(None))) => return Event::Closed(1005, String::new()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Event::Closed(1006, e.to_string()),
                None => return Event::Closed(1006, "stream ended".into()),
            }
        }
    }

    /// Reads the welcome frame and returns it.
    pub async fn welcome(&mut self) -> Value {
        let v = self.next_json().await;
        assert_eq!(v["type"], "welcome", "first frame must be welcome: {v}");
        v
    }

    /// Reads `n` message frames and returns their seqs.
    pub async fn seqs(&mut self, n: usize) -> Vec<u64> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let v = self.next_of_type("message").await;
            out.push(v["seq"].as_u64().expect("seq"));
        }
        out
    }

    pub async fn close(mut self) {
        let _ = self.inner.close(None).await;
        // Read until the server's close reply: by then the session is gone server-side.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(m)) = self.inner.next().await {
                if m.is_close() {
                    break;
                }
            }
        })
        .await;
    }
}

#[derive(Debug)]
pub enum Event {
    Json(Value),
    Closed(u16, String),
}

pub fn close_code(c: CloseCode) -> u16 {
    u16::from(c)
}

/// Polls `check` until it returns true or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `user` has any connected device, per the presence API.
pub async fn online(node: &TestNode, user: &str) -> bool {
    let (s, v) = node.get(&format!("/api/v1/users/{user}/presence")).await;
    assert_eq!(s, 200, "{v}");
    v["online"].as_bool().unwrap()
}

/// A tiny deterministic generator (xorshift64*), so load tests are reproducible without
/// another crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}
