//! The local cluster of `scripts/cluster.sh` for tests: brought up in a state directory of
//! its own under `target/tmp` on free ports, with the test's `herald` binary, and taken down
//! (`cluster.sh down`) when dropped. Logs stay in the directory when the test failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::procs::{free_port, try_request};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

pub struct Cluster {
    pub dir: PathBuf,
    /// `state.env`: ports and secrets the script chose.
    pub state: BTreeMap<String, String>,
    pub port: u16,
}

fn script() -> PathBuf {
    Path::new(ROOT).join("scripts/cluster.sh")
}

impl Cluster {
    /// `cluster.sh up`; panics with the script's output when it fails (haproxy, redis-server
    /// or secantusd-rs missing and not installable, a node that does not start).
    pub fn up(name: &str) -> Cluster {
        let dir = Path::new(ROOT)
            .join("target/tmp")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let port = free_port();
        let mut cluster = Cluster {
            dir,
            state: BTreeMap::new(),
            port,
        };
        let out = cluster
            .command(&["up"])
            .env("HERALD_CLUSTER_PORT", port.to_string())
            .env("HERALD_CLUSTER_OPS_PORT", free_port().to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/cluster.sh up failed (logs in {}):\n{}{}",
            cluster.dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let state = std::fs::read_to_string(cluster.dir.join("state.env")).unwrap();
        cluster.state = state
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        cluster
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(script());
        c.args(args)
            .env("HERALD_CLUSTER_DIR", &self.dir)
            .env("HERALD_BIN", env!("CARGO_BIN_EXE_herald"));
        c
    }

    /// `cluster.sh restart NODE` (SIGTERM, wait for the drain, start, wait until haproxy
    /// sees it up), without blocking the test's runtime.
    pub async fn restart(&self, node: &str) {
        let out = tokio::process::Command::from(self.command(&["restart", node]))
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "cluster.sh restart {node} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    /// A one-hour token for `user`, signed with the cluster's secret.
    pub fn token(&self, user: &str) -> String {
        let cfg = herald::config::AuthConfig {
            jwt_secret: self.state["JWT_SECRET"].clone(),
            ..Default::default()
        };
        herald::auth::TokenMinter::from_config(&cfg).unwrap().mint(
            &herald::ids::UserId::parse(user).unwrap(),
            None,
            3600,
        )
    }

    /// One POST through haproxy with the producer key: status and JSON body, or `None`
    /// when the connection failed or took over 10 s.
    pub async fn post(&self, path: &str, body: &str) -> Option<(u16, Value)> {
        try_request(self.port, "POST", path, &self.state["API_KEY"], body).await
    }

    pub fn haproxy_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/haproxy.log")).unwrap_or_default()
    }

    /// haproxy log lines that name an internal listener's port or an `/internal` path.
    pub fn internal_requests_in_haproxy_log(&self) -> Vec<String> {
        let internal: Vec<String> = self
            .state
            .iter()
            .filter(|(k, _)| k.starts_with("INTERNAL_"))
            .map(|(_, port)| format!(":{port} "))
            .collect();
        self.haproxy_log()
            .lines()
            .filter(|l| l.contains("/internal") || internal.iter().any(|p| l.contains(p)))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.command(&["down"]).output();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The `p`th percentile of sorted durations (zero when empty).
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) * p).div_ceil(100)]
}
