//! Real external processes for cluster tests: `redis-server` and `herald` nodes, each
//! killed when dropped.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{http, WAIT};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(super) fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

const HOW_TO: &str = "cluster tests need Redis: run them with ./scripts/test.sh (it installs and \
                      starts redis-server), or install Debian's redis-server, or set \
                      HERALD_TEST_REDIS_URL=redis://127.0.0.1:PORT";

/// A redis-server started by the test, on a free loopback port, without persistence.
pub struct RedisProc {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl RedisProc {
    /// Starts a private redis-server; fails with instructions when there is none.
    pub fn start() -> RedisProc {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("herald-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = RedisProc {
            port,
            child: None,
            dir,
        };
        r.restart();
        r
    }

    /// (Re)starts the server on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({e}); {HOW_TO}"));
        self.child = Some(child);
        wait_for_port(self.port, "redis-server");
    }

    pub fn kill(&mut self) {
        self.signal("CONT");
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends a signal (`STOP`, `CONT`) to the server.
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let ok = Command::new("kill")
                .args([&format!("-{sig}"), &c.id().to_string()])
                .status()
                .unwrap();
            assert!(ok.success());
        }
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The Redis URL for tests that only need *a* Redis: the test script's, or a private one.
pub fn shared_redis() -> (String, Option<RedisProc>) {
    match std::env::var("HERALD_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            let r = RedisProc::start();
            (r.url(), Some(r))
        }
    }
}

/// A `herald serve` child process.
pub struct HeraldProc {
    pub name: String,
    pub port: u16,
    child: Child,
}

pub const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml");
pub const API_KEY: &str = "dev-api-key-change-me";
/// The admin key of the repository's config.toml, for `GET /api/v1/stats`.
pub const ADMIN_KEY: &str = "dev-admin-key-change-me";
pub const SECRET: &str = "cluster-test-secret-0123456789";
/// The JWT secret of the repository's config.toml, which node processes load.
pub const JWT_SECRET: &str = "dev-secret-change-me-0123456789";

/// A connection token a node started from config.toml accepts.
pub fn token(user: &str) -> String {
    let cfg = herald::config::AuthConfig {
        jwt_secret: JWT_SECRET.into(),
        ..Default::default()
    };
    herald::auth::TokenMinter::from_config(&cfg).unwrap().mint(
        &herald::ids::UserId::parse(user).unwrap(),
        None,
        3600,
    )
}

/// Environment for cluster node processes: Redis bindings under a key prefix unique to
/// `test` and this process, short timers, and with `mongo` the MongoDB store in a database
/// of the same name. `extra` comes last, so it overrides.
pub fn cluster_env(
    redis: &str,
    mongo: Option<&str>,
    test: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let name = format!("t{}_{test}", std::process::id());
    let mut e = vec![
        ("HERALD_ROUTES__BACKEND", "redis"),
        ("HERALD_ROUTES__REDIS_URL", redis),
        ("HERALD_ROUTES__KEY_PREFIX", name.as_str()),
        ("HERALD_ROUTES__ROUTE_TTL_MS", "1500"),
        ("HERALD_ROUTES__SWEEP_MS", "200"),
        ("HERALD_CLUSTER__FORWARD_TIMEOUT_MS", "300"),
        ("HERALD_CLUSTER__FORWARD_RETRIES", "1"),
    ];
    if let Some(m) = mongo {
        e.extend([
            ("HERALD_STORE__BACKEND", "mongo"),
            ("HERALD_STORE__MONGO__URL", m),
            ("HERALD_STORE__MONGO__DATABASE", name.as_str()),
            ("HERALD_STORE__MONGO__OP_TIMEOUT_MS", "1500"),
        ]);
    }
    e.extend_from_slice(extra);
    e.into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Starts nodes `names` with `env` and waits until each is ready and sees all of them as
/// live peers.
pub async fn start_nodes(names: &[&str], env: &[(String, String)]) -> Vec<HeraldProc> {
    let nodes: Vec<HeraldProc> = names.iter().map(|n| HeraldProc::start(n, env)).collect();
    for n in &nodes {
        super::eventually(&format!("{} ready with every peer", n.name), || async {
            let (s, v) = n.stats().await;
            let (r, _) = http(&format!("{}/readyz", n.base()), None, None).await;
            s == 200 && r == 200 && v["peers"].as_array().map_or(0, |p| p.len()) == names.len()
        })
        .await;
    }
    nodes
}

/// Connects `user` to `node` and reads the welcome frame.
pub async fn connect(node: &HeraldProc, user: &str, extra: &str) -> super::Ws {
    let mut ws = super::Ws::connect(&node.ws_url(&token(user), extra))
        .await
        .expect("connects");
    ws.welcome().await;
    ws
}

/// Nodes that hold `user` according to `via`'s view of the route table.
pub async fn route_nodes(via: &HeraldProc, user: &str) -> Vec<String> {
    let (s, v) = via.get(&format!("/api/v1/users/{user}/presence")).await;
    assert_eq!(s, 200, "{v}");
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

impl HeraldProc {
    /// Starts node `name` with the repository config plus `env` overrides.
    pub fn start(name: &str, env: &[(String, String)]) -> HeraldProc {
        Self::start_on(name, env, free_port())
    }

    /// Starts node `name` on a given public port (a restart keeps its address, as behind
    /// a load balancer).
    pub fn start_on(name: &str, env: &[(String, String)], port: u16) -> HeraldProc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
        cmd.args(["serve", "--config", CONFIG])
            .env("HERALD_NODE__ID", name)
            .env("HERALD_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("HERALD_SERVER__WORKERS", "1")
            .env("HERALD_CLUSTER__INTERNAL_LISTEN", "127.0.0.1:0")
            .env("HERALD_CLUSTER__SECRET", SECRET)
            .env("HERALD_LOG__LEVEL", "warn")
            .stdout(Stdio::null());
        // HERALD_TEST_NODE_LOGS=<level> shows the nodes' logs (e.g. `debug`).
        match std::env::var("HERALD_TEST_NODE_LOGS") {
            Ok(level) => {
                cmd.env("RUST_LOG", level);
            }
            Err(_) => {
                cmd.stderr(Stdio::null());
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("herald binary starts");
        wait_for_port(port, name);
        HeraldProc {
            name: name.to_string(),
            port,
            child,
        }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn ws_url(&self, token: &str, extra: &str) -> String {
        format!("ws://127.0.0.1:{}/ws?token={token}&{extra}", self.port)
    }

    pub async fn post(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        http(&format!("{}{path}", self.base()), Some(body), Some(API_KEY)).await
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        http(&format!("{}{path}", self.base()), None, Some(API_KEY)).await
    }

    /// `GET /api/v1/stats` with the admin key.
    pub async fn stats(&self) -> (u16, serde_json::Value) {
        let url = format!("{}/api/v1/stats", self.base());
        http(&url, None, Some(ADMIN_KEY)).await
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill -{sig}");
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        self.signal("TERM");
        let deadline = Instant::now() + WAIT * 3;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
        None
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HeraldProc {
    fn drop(&mut self) {
        // A stopped process must be continued to die cleanly from SIGKILL's point of view.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        self.kill9();
    }
}

/// Runs one Redis command over a fresh connection and returns the raw RESP reply.
pub async fn redis_cmd(url: &str, args: &[&str]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("redis://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).to_string()
}

// Re-exported where the other child processes are; not every test binary uses them.
#[allow(unused_imports)]
pub use super::mongo_proc::{shared_mongo, MongoProc};

/// One request to `127.0.0.1:port` on a fresh connection with `Authorization: Bearer key`:
/// status and JSON body (`Null` when not JSON), or `None` when the connection was refused
/// or cut (a node restarting) or the answer took over 10 s.
pub async fn try_request(
    port: u16,
    method: &str,
    path: &str,
    key: &str,
    body: &str,
) -> Option<(u16, serde_json::Value)> {
    let talk = async {
        let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        request_on(s, method, path, key, body).await
    };
    tokio::time::timeout(Duration::from_secs(10), talk)
        .await
        .ok()
        .flatten()
}

/// [`try_request`] on a connection the caller opened (so it can tell a refused connection
/// from a request that got no answer), without a time limit.
pub async fn request_on(
    mut s: tokio::net::TcpStream,
    method: &str,
    path: &str,
    key: &str,
    body: &str,
) -> Option<(u16, serde_json::Value)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: Bearer {key}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status: u16 = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = &text[text.find("\r\n\r\n")? + 4..];
    Some((
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    ))
}
