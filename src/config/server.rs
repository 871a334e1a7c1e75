//! `[node]`, `[server]` and `[log]`: the node's identity, its listeners and process limits,
//! and log output; with their checks.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

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
    /// HTTP worker threads, and as many hub shards (each running the sessions of the users
    /// hashed to it); 0 means one per core.
    pub workers: usize,
    /// Where the hub shards run: on threads of their own, or one on each HTTP worker.
    pub hub_threads: HubThreads,
    /// Most concurrent HTTP connections per worker (an upgraded WebSocket leaves the worker);
    /// past it new connections wait in the backlog.
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
    /// Sessions a drain closes per second, so they reconnect to the other nodes at a steady
    /// rate; 0 = all at once.
    pub drain_close_rate: u32,
    /// The longest a drain spends closing sessions, ms: past it the rate goes up to fit.
    pub drain_spread_ms: u64,
    /// The reconnect jitter, ms, a drain tells clients to use (`{"type":"reconnect",
    /// "jitter_ms":…}` before the 1012 close): each waits a random time up to it.
    pub drain_reconnect_jitter_ms: u64,
    /// WebSocket upgrades per second per client address (429 `connect_rate_limited`
    /// above); 0 = no limit.
    pub connect_rate_per_ip: u32,
    /// Upgrades one client address may make at once before the rate applies.
    pub connect_burst_per_ip: u32,
    /// Also limit clients on loopback addresses (off: local tools and benchmarks are not).
    pub limit_loopback: bool,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` names the client: the
    /// client is the right-most address in it that is not one of these.
    pub trusted_proxies: Vec<IpNet>,
    /// Serve the demo page (`/demo`) and the JS client (`/client/herald.js`).
    pub demo: bool,
}

/// Where the hub shards (and with them the sessions) run; measured in docs/benchmarks.md
/// (eighth round).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HubThreads {
    /// One thread per shard beside the HTTP workers: a broadcast pass never holds up
    /// request parsing, and on a machine shared with the store, the MongoDB path costs the
    /// node less CPU per message.
    #[default]
    Own,
    /// Each HTTP worker runs one shard: half as many busy threads, a targeted message is
    /// often delivered by the thread that stored it; less CPU per message and less memory
    /// per connection on the embedded store.
    Workers,
}

/// An address block, `10.0.0.0/8` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl TryFrom<String> for IpNet {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not an address or an address/prefix block");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(IpNet { addr, prefix })
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            // unwrap: a literal, valid socket address
            listen: "127.0.0.1:8080".parse().unwrap(),
            workers: 0,
            hub_threads: HubThreads::Own,
            max_connections_per_worker: 25_000,
            max_sessions: 0,
            backlog: 4096,
            shutdown_timeout_s: 10,
            drain_delay_ms: 0,
            drain_close_rate: 1000,
            drain_spread_ms: 10_000,
            drain_reconnect_jitter_ms: 1000,
            connect_rate_per_ip: 100,
            connect_burst_per_ip: 200,
            limit_loopback: false,
            trusted_proxies: Vec::new(),
            demo: true,
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

impl ServerConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.connect_rate_per_ip > 0 && self.connect_burst_per_ip == 0 {
            return Err(invalid(
                "server.connect_burst_per_ip",
                "must be > 0 when server.connect_rate_per_ip is set",
            ));
        }
        if self.drain_spread_ms > 600_000 {
            return Err(invalid(
                "server.drain_spread_ms",
                "must be at most 600000 (10 minutes)",
            ));
        }
        if self.drain_reconnect_jitter_ms > 600_000 {
            return Err(invalid(
                "server.drain_reconnect_jitter_ms",
                "must be at most 600000 (10 minutes)",
            ));
        }
        Ok(())
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
