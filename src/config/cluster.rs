//! `[routes]` and `[cluster]`: the user -> node binding table (Redis in cluster mode) and
//! node-to-node forwarding; with their checks.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError};

/// Which route table backs the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoutesBackend {
    /// In-process: a single node.
    Memory,
    /// Redis: a cluster of nodes sharing one route table.
    Redis,
}

/// `[routes]`: the user -> node route table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutesConfig {
    pub backend: RoutesBackend,
    /// Redis address, `redis://host:port` (database 0; isolate deployments with `key_prefix`).
    pub redis_url: String,
    /// Optional Redis password (AUTH).
    pub redis_password: String,
    /// Prefix of every Redis key Herald writes.
    pub key_prefix: String,
    /// Lifetime of a user -> node binding, ms; each hub re-binds its users every third of it.
    pub route_ttl_ms: u64,
    /// Lifetime of a node's liveness key, ms; refreshed every third of it.
    pub node_ttl_ms: u64,
    /// Timeout of every Redis call, ms (redis-async has none of its own).
    pub op_timeout_ms: u64,
    /// How often overdue bindings are swept, ms (backs the fire-and-forget expiry events).
    pub sweep_ms: u64,
}

impl Default for RoutesConfig {
    fn default() -> Self {
        Self {
            backend: RoutesBackend::Memory,
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_password: String::new(),
            key_prefix: "herald".into(),
            route_ttl_ms: 30_000,
            node_ttl_ms: 3_000,
            op_timeout_ms: 1_000,
            sweep_ms: 1_000,
        }
    }
}

impl RoutesConfig {
    /// Host and port of `redis_url`.
    pub fn redis_host_port(&self) -> Result<(String, u16), String> {
        let rest = self
            .redis_url
            .strip_prefix("redis://")
            .ok_or("must start with redis://")?;
        let rest = rest.split('/').next().unwrap_or(rest);
        let (host, port) = rest.rsplit_once(':').unwrap_or((rest, "6379"));
        let port = port.parse().map_err(|_| format!("bad port `{port}`"))?;
        if host.is_empty() {
            return Err("missing host".into());
        }
        Ok((host.to_string(), port))
    }

    pub fn route_ttl(&self) -> Duration {
        Duration::from_millis(self.route_ttl_ms)
    }

    /// How often each hub re-binds all of its users.
    pub fn route_refresh(&self) -> Duration {
        Duration::from_millis(self.route_ttl_ms / 3)
    }

    pub fn node_ttl(&self) -> Duration {
        Duration::from_millis(self.node_ttl_ms)
    }

    /// How often a node refreshes its liveness key and its view of live peers.
    pub fn node_refresh(&self) -> Duration {
        Duration::from_millis(self.node_ttl_ms / 3)
    }

    pub fn op_timeout(&self) -> Duration {
        Duration::from_millis(self.op_timeout_ms)
    }
}

/// `[cluster]`: node-to-node forwarding.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Internal listener for `/internal/v1/deliver`; never expose it through the load balancer.
    pub internal_listen: SocketAddr,
    /// Address peers use to reach the internal listener; empty = the bound address.
    pub internal_advertise: String,
    /// Shared secret authenticating node-to-node requests (HMAC-SHA256); 16+ bytes in cluster mode.
    pub secret: String,
    /// Largest clock difference (and replay window) accepted on internal requests, ms.
    pub replay_window_ms: u64,
    /// Dispatcher actors; a user's messages always go through the same one.
    pub dispatchers: usize,
    /// Timeout of one forward POST, ms.
    pub forward_timeout_ms: u64,
    /// How long the internal listener waits for a forward's body once its headers are in,
    /// ms (408 past it); 0 means `forward_timeout_ms`, after which the sender has given up
    /// on the request anyway.
    pub internal_body_timeout_ms: u64,
    /// Retries of a failed forward before it is dropped (the store keeps the message).
    pub forward_retries: u32,
    /// Envelopes queued towards one peer before the oldest are dropped.
    pub peer_queue: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            // unwrap: a literal, valid socket address
            internal_listen: "127.0.0.1:8081".parse().unwrap(),
            internal_advertise: String::new(),
            secret: String::new(),
            replay_window_ms: 30_000,
            dispatchers: 4,
            forward_timeout_ms: 2_000,
            internal_body_timeout_ms: 0,
            forward_retries: 2,
            peer_queue: 50_000,
        }
    }
}

impl RoutesConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.backend == RoutesBackend::Redis {
            self.redis_host_port()
                .map_err(|e| invalid("routes.redis_url", e))?;
        }
        if self.key_prefix.is_empty() || self.key_prefix.contains(char::is_whitespace) {
            return Err(invalid(
                "routes.key_prefix",
                "must be non-empty without spaces",
            ));
        }
        if self.route_ttl_ms < 30 || self.node_ttl_ms < 30 {
            return Err(invalid(
                "routes.route_ttl_ms",
                "route_ttl_ms and node_ttl_ms must be at least 30",
            ));
        }
        if self.op_timeout_ms == 0 || self.sweep_ms == 0 {
            return Err(invalid(
                "routes.op_timeout_ms",
                "op_timeout_ms and sweep_ms must be > 0",
            ));
        }
        Ok(())
    }
}

impl ClusterConfig {
    /// Deadline for reading a forward's body: configured, or the sender's forward timeout.
    pub fn internal_body_timeout(&self) -> Duration {
        match self.internal_body_timeout_ms {
            0 => Duration::from_millis(self.forward_timeout_ms),
            ms => Duration::from_millis(ms),
        }
    }

    /// Checks that hold in every mode; the secret is checked in cluster mode only (see
    /// `Config::validate`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.dispatchers == 0 {
            return Err(invalid("cluster.dispatchers", "must be > 0"));
        }
        if self.peer_queue == 0 {
            return Err(invalid("cluster.peer_queue", "must be > 0"));
        }
        if self.forward_timeout_ms == 0 {
            return Err(invalid("cluster.forward_timeout_ms", "must be > 0"));
        }
        Ok(())
    }
}
