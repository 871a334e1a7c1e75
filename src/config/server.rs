//! `[node]`, `[server]` and `[log]`: the node's identity, its listeners and process limits,
//! and log output; with their checks.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{invalid, ConfigError};

/// `[node]`: identity of this node in the cluster.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Node id; empty means generated at startup (`node-<random>`).
    pub id: String,
}

/// `[server]`: listeners and process limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Public listener (WebSocket, REST, operations).
    pub listen: SocketAddr,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Most concurrent connections per worker; past it new connections wait in the backlog.
    pub max_connections_per_worker: usize,
    /// Most WebSocket sessions on this node; past it `/ws` answers 503 `node_full` instead of
    /// running into the open-file limit. 0 = the process's open-file limit minus 1024.
    pub max_sessions: usize,
    /// Listen backlog.
    pub backlog: u32,
    /// Seconds a drain waits for sessions to close and requests to finish before exiting.
    pub shutdown_timeout_s: u64,
    /// On SIGTERM, how long `/readyz` fails before sessions are closed, ms, so a load
    /// balancer stops sending new connections first.
    pub drain_delay_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            // unwrap: a literal, valid socket address
            listen: "127.0.0.1:8080".parse().unwrap(),
            workers: 0,
            max_connections_per_worker: 25_000,
            max_sessions: 0,
            backlog: 4096,
            shutdown_timeout_s: 10,
            drain_delay_ms: 0,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Plain,
    Json,
}

/// `[log]`: logging; `RUST_LOG` overrides `level`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Plain,
        }
    }
}

impl NodeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.id.is_empty() {
            crate::ids::NodeId::parse(&self.id).map_err(|e| invalid("node.id", e.to_string()))?;
        }
        Ok(())
    }
}
