//! Node configuration: the TOML file, `HERALD_*` environment overrides, validation.
//!
//! [`Config::from_sources`] takes the file text and an environment map, so tests feed it
//! values directly. An override `HERALD_SESSION__HEARTBEAT_MS=500` sets `session.heartbeat_ms`
//! (double underscores separate table names and the key, so `HERALD_STORE__MONGO__URL` sets
//! `store.mongo.url`). Unknown keys and bad values fail at startup with a message naming the
//! key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// Prefix of every environment override.
pub const ENV_PREFIX: &str = "HERALD_";

/// Typed configuration errors; each names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Parse(String),
    #[error("invalid config key `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("invalid environment override `{var}`: {reason}")]
    Env { var: String, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// The whole node configuration. Every field has a default, so an empty file is valid.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub node: NodeConfig,
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub session: SessionConfig,
    pub ingest: IngestConfig,
    pub store: StoreConfig,
    pub routes: RoutesConfig,
    pub cluster: ClusterConfig,
    pub log: LogConfig,
}

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

/// JWT algorithm families Herald verifies; fixed by config, never read from a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum JwtAlgorithm {
    HS256,
    RS256,
    ES256,
}

/// `[auth]`: how connection tokens and producer API keys are checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Algorithm every token must use.
    pub jwt_algorithm: JwtAlgorithm,
    /// HS256 shared secret (also used by `herald token`).
    pub jwt_secret: String,
    /// PEM public key file for RS256/ES256.
    pub jwt_public_key_file: String,
    /// PEM private key file, only for `herald token` with RS256/ES256.
    pub jwt_private_key_file: String,
    /// Required `aud` claim; empty means not checked.
    pub audience: String,
    /// Required `iss` claim; empty means not checked.
    pub issuer: String,
    /// Clock skew allowed on `exp`, seconds.
    pub leeway_s: u64,
    /// Producer API keys accepted as `Authorization: Bearer <key>`.
    pub api_keys: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_algorithm: JwtAlgorithm::HS256,
            jwt_secret: String::new(),
            jwt_public_key_file: String::new(),
            jwt_private_key_file: String::new(),
            audience: String::new(),
            issuer: String::new(),
            leeway_s: 5,
            api_keys: Vec::new(),
        }
    }
}

/// `[session]`: WebSocket session behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Interval of server WebSocket pings and the interval clients are told to ping at, ms.
    pub heartbeat_ms: u64,
    /// Silence after which a session is closed with 4008, ms; 0 means `heartbeat_ms * 2 + 5000`.
    pub heartbeat_timeout_ms: u64,
    /// Frames a session may have queued towards its socket before it is closed with 4002.
    pub outbound_queue: usize,
    /// Largest client frame accepted, bytes; bigger ones close the session with 1009.
    pub max_frame_bytes: usize,
    /// Most messages replayed on connect; more missed than this sends `history_truncated`.
    pub replay_limit: usize,
    /// Grace period for a close frame to get through to a slow client, ms.
    pub close_grace_ms: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            heartbeat_ms: 25_000,
            heartbeat_timeout_ms: 0,
            outbound_queue: 256,
            max_frame_bytes: 16 * 1024,
            replay_limit: 1000,
            close_grace_ms: 1000,
        }
    }
}

impl SessionConfig {
    /// Server ping interval.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    /// Grace period for a close frame to reach a slow client.
    pub fn close_grace(&self) -> Duration {
        Duration::from_millis(self.close_grace_ms)
    }

    /// Silence allowed before 4008: configured, or derived from the heartbeat.
    pub fn heartbeat_timeout(&self) -> Duration {
        if self.heartbeat_timeout_ms == 0 {
            Duration::from_millis(self.heartbeat_ms * 2 + 5000)
        } else {
            Duration::from_millis(self.heartbeat_timeout_ms)
        }
    }
}

/// `[ingest]`: producer REST API limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest request body, bytes (413 above).
    pub max_body_bytes: usize,
    /// Most recipients of one message.
    pub max_recipients: usize,
    /// Most messages in one batch request.
    pub max_batch: usize,
    /// TTL of a message without `ttl_s`, seconds.
    pub default_ttl_s: u64,
    /// Largest `ttl_s` accepted, seconds.
    pub max_ttl_s: u64,
    /// Deliveries waiting for the hub (a broadcast counts once per session) above which
    /// ingestion answers 429 `overloaded` instead of queueing without bound.
    pub max_hub_backlog: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_recipients: 10_000,
            max_batch: 1000,
            default_ttl_s: 7 * 86_400,
            max_ttl_s: 30 * 86_400,
            max_hub_backlog: 1_000_000,
        }
    }
}

/// Which message store backs the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// In-process, bounded, not durable across restarts.
    Memory,
    /// MongoDB (`[store.mongo]`): durable, shared by every node of a cluster.
    Mongo,
}

/// `[store]`: message store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    /// Memory store: messages kept per user (oldest dropped first).
    pub max_messages_per_user: usize,
    /// Memory store: broadcasts kept.
    pub max_broadcasts: usize,
    /// How long an idempotency key maps to its first message, seconds.
    pub idempotency_window_s: u64,
    /// Ack cursors are written in batches at most this often, ms.
    pub cursor_flush_ms: u64,
    /// MongoDB settings, used when `backend = "mongo"`. Its `max_messages_per_user` and
    /// `idempotency_window_s` are taken from this section.
    pub mongo: crate::store::mongo::MongoStoreConfig,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Memory,
            max_messages_per_user: 1000,
            max_broadcasts: 1000,
            idempotency_window_s: 86_400,
            cursor_flush_ms: 200,
            mongo: Default::default(),
        }
    }
}

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
            forward_retries: 2,
            peer_queue: 50_000,
        }
    }
}

impl StoreConfig {
    /// The MongoDB settings with the backend-independent limits of `[store]` applied.
    pub fn mongo_config(&self) -> crate::store::mongo::MongoStoreConfig {
        let mut m = self.mongo.clone();
        m.max_messages_per_user = self.max_messages_per_user;
        m.idempotency_window_s = self.idempotency_window_s;
        m
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

impl Config {
    /// Reads `path` (if given) and the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.display().to_string(),
                source,
            })?,
            None => String::new(),
        };
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        Config::from_sources(&text, &env)
    }

    /// Parses TOML `text`, applies `HERALD_SECTION__KEY` overrides from `env`, validates.
    pub fn from_sources(text: &str, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let mut root: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        for (var, raw) in env {
            let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            if path.len() < 2 || path.iter().any(String::is_empty) {
                continue;
            }
            let Some((key, tables)) = path.split_last() else {
                continue;
            };
            let mut table = &mut root;
            for name in tables {
                let entry = table
                    .entry(name.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                table = match entry {
                    toml::Value::Table(t) => t,
                    _ => {
                        return Err(ConfigError::Env {
                            var: var.clone(),
                            reason: format!("`{name}` is not a table"),
                        })
                    }
                };
            }
            table.insert(key.clone(), parse_env_value(raw));
        }
        // Re-rendered and parsed from text so that type errors name the offending key.
        let merged = toml::to_string(&root).map_err(|e| ConfigError::Parse(e.to_string()))?;
        let cfg: Config = toml::from_str(&merged)
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.node.id.is_empty() {
            crate::ids::NodeId::parse(&self.node.id)
                .map_err(|e| invalid("node.id", e.to_string()))?;
        }
        match self.auth.jwt_algorithm {
            JwtAlgorithm::HS256 if self.auth.jwt_secret.len() < 16 => {
                return Err(invalid(
                    "auth.jwt_secret",
                    "HS256 needs a secret of at least 16 bytes",
                ))
            }
            JwtAlgorithm::RS256 | JwtAlgorithm::ES256
                if self.auth.jwt_public_key_file.is_empty() =>
            {
                return Err(invalid(
                    "auth.jwt_public_key_file",
                    "RS256/ES256 need a PEM public key file",
                ))
            }
            _ => {}
        }
        if self.auth.api_keys.iter().any(|k| k.len() < 8) {
            return Err(invalid(
                "auth.api_keys",
                "every API key needs at least 8 characters",
            ));
        }
        let s = &self.session;
        if s.heartbeat_ms == 0 {
            return Err(invalid("session.heartbeat_ms", "must be > 0"));
        }
        if s.heartbeat_timeout_ms != 0 && s.heartbeat_timeout_ms <= s.heartbeat_ms {
            return Err(invalid(
                "session.heartbeat_timeout_ms",
                "must be greater than session.heartbeat_ms",
            ));
        }
        if s.outbound_queue == 0 {
            return Err(invalid("session.outbound_queue", "must be > 0"));
        }
        if s.max_frame_bytes < 256 {
            return Err(invalid("session.max_frame_bytes", "must be at least 256"));
        }
        if s.replay_limit == 0 {
            return Err(invalid("session.replay_limit", "must be > 0"));
        }
        let i = &self.ingest;
        if i.max_body_bytes < 1024 {
            return Err(invalid("ingest.max_body_bytes", "must be at least 1024"));
        }
        if i.max_recipients == 0 {
            return Err(invalid("ingest.max_recipients", "must be > 0"));
        }
        if i.max_hub_backlog == 0 {
            return Err(invalid("ingest.max_hub_backlog", "must be > 0"));
        }
        if i.max_batch == 0 {
            return Err(invalid("ingest.max_batch", "must be > 0"));
        }
        if i.default_ttl_s == 0 || i.default_ttl_s > i.max_ttl_s {
            return Err(invalid(
                "ingest.default_ttl_s",
                "must be > 0 and <= ingest.max_ttl_s",
            ));
        }
        if self.store.max_messages_per_user == 0 {
            return Err(invalid("store.max_messages_per_user", "must be > 0"));
        }
        if self.store.backend == StoreBackend::Mongo {
            self.store
                .mongo_config()
                .validate()
                .map_err(|(key, reason)| invalid(key, reason))?;
        }
        if self.store.max_broadcasts == 0 {
            return Err(invalid("store.max_broadcasts", "must be > 0"));
        }
        if self.routes.backend == RoutesBackend::Redis {
            self.routes
                .redis_host_port()
                .map_err(|e| invalid("routes.redis_url", e))?;
            if self.cluster.secret.len() < 16 {
                return Err(invalid(
                    "cluster.secret",
                    "cluster mode needs a shared secret of at least 16 bytes",
                ));
            }
        }
        if self.routes.key_prefix.is_empty() || self.routes.key_prefix.contains(char::is_whitespace)
        {
            return Err(invalid(
                "routes.key_prefix",
                "must be non-empty without spaces",
            ));
        }
        if self.routes.route_ttl_ms < 30 || self.routes.node_ttl_ms < 30 {
            return Err(invalid(
                "routes.route_ttl_ms",
                "route_ttl_ms and node_ttl_ms must be at least 30",
            ));
        }
        if self.routes.op_timeout_ms == 0 || self.routes.sweep_ms == 0 {
            return Err(invalid(
                "routes.op_timeout_ms",
                "op_timeout_ms and sweep_ms must be > 0",
            ));
        }
        if self.cluster.dispatchers == 0 {
            return Err(invalid("cluster.dispatchers", "must be > 0"));
        }
        if self.cluster.peer_queue == 0 {
            return Err(invalid("cluster.peer_queue", "must be > 0"));
        }
        if self.store.cursor_flush_ms == 0 {
            return Err(invalid("store.cursor_flush_ms", "must be > 0"));
        }
        Ok(())
    }

    /// Session cap: configured, or derived from the open-file limit (`/proc/self/limits`),
    /// leaving room for listeners, backend connections and in-flight requests.
    pub fn max_sessions(&self) -> usize {
        if self.server.max_sessions > 0 {
            return self.server.max_sessions;
        }
        let soft = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
            })
            .and_then(|v| v.parse::<usize>().ok());
        soft.map_or(100_000, |n| n.saturating_sub(1024).max(64))
    }

    /// Worker threads to run: configured, or one per core.
    pub fn workers(&self) -> usize {
        if self.server.workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            self.server.workers
        }
    }
}

/// An environment value is read as a TOML value when it parses as one (numbers, booleans,
/// arrays), and as a plain string otherwise.
fn parse_env_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[auth]\njwt_secret = \"0123456789abcdef\"\n";

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn repository_config_file_is_valid() {
        let text = include_str!("../config.toml");
        Config::from_sources(text, &BTreeMap::new()).expect("config.toml must load");
    }

    #[test]
    fn docker_cluster_config_file_is_valid() {
        let text = include_str!("../docker/herald-cluster.toml");
        let cfg = Config::from_sources(text, &BTreeMap::new())
            .expect("docker/herald-cluster.toml must load");
        assert_eq!(cfg.store.backend, StoreBackend::Mongo);
        assert_eq!(cfg.routes.backend, RoutesBackend::Redis);
    }

    #[test]
    fn env_overrides_replace_file_values_with_typed_values() {
        let cfg = Config::from_sources(
            BASE,
            &env(&[
                ("HERALD_SESSION__HEARTBEAT_MS", "500"),
                ("HERALD_AUTH__API_KEYS", "[\"key-aaaaaaaa\"]"),
                ("HERALD_NODE__ID", "n1"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.session.heartbeat_ms, 500);
        assert_eq!(cfg.auth.api_keys, vec!["key-aaaaaaaa".to_string()]);
        assert_eq!(cfg.node.id, "n1");
        let nested =
            Config::from_sources(BASE, &env(&[("HERALD_ROUTES__KEY_PREFIX", "p1")])).unwrap();
        assert_eq!(nested.routes.key_prefix, "p1");
        let err = Config::from_sources(BASE, &env(&[("HERALD_LOG__LEVEL__X", "1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("log.level"), "{err}");
    }

    #[test]
    fn unknown_key_fails_naming_the_key() {
        let err = Config::from_sources("[session]\nheartbeat = 3\n", &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("heartbeat"), "{err}");
    }

    #[test]
    fn bad_value_fails_naming_the_key() {
        let err = Config::from_sources(BASE, &env(&[("HERALD_SESSION__OUTBOUND_QUEUE", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("session.outbound_queue"), "{err}");
        let err = Config::from_sources("[auth]\njwt_secret = \"short\"\n", &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth.jwt_secret"), "{err}");
        let err = Config::from_sources(BASE, &env(&[("HERALD_SESSION__HEARTBEAT_MS", "\"soon\"")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("heartbeat_ms"), "{err}");
    }

    #[test]
    fn heartbeat_timeout_is_derived_from_heartbeat_when_unset() {
        let cfg =
            Config::from_sources(BASE, &env(&[("HERALD_SESSION__HEARTBEAT_MS", "1000")])).unwrap();
        assert_eq!(cfg.session.heartbeat_timeout(), Duration::from_millis(7000));
    }
}
