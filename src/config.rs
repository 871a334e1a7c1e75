//! Node configuration: the TOML file, `HERALD_*` environment overrides, validation.
//!
//! [`Config::from_sources`] takes the file text and an environment map, so tests feed it
//! values directly. An override `HERALD_SESSION__HEARTBEAT_MS=500` sets `session.heartbeat_ms`
//! (double underscore separates the section from the key). Unknown keys and bad values fail
//! at startup with a message naming the key.

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
    /// Listen backlog.
    pub backlog: u32,
    /// Seconds a drain waits for sessions to close and requests to finish before exiting.
    pub shutdown_timeout_s: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            // unwrap: a literal, valid socket address
            listen: "127.0.0.1:8080".parse().unwrap(),
            workers: 0,
            max_connections_per_worker: 25_000,
            backlog: 4096,
            shutdown_timeout_s: 10,
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
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_recipients: 10_000,
            max_batch: 1000,
            default_ttl_s: 7 * 86_400,
            max_ttl_s: 30 * 86_400,
        }
    }
}

/// Which message store backs the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// In-process, bounded, not durable across restarts.
    Memory,
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
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Memory,
            max_messages_per_user: 1000,
            max_broadcasts: 1000,
            idempotency_window_s: 86_400,
            cursor_flush_ms: 200,
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
            let Some((section, key)) = rest.split_once("__") else {
                continue;
            };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            let value = parse_env_value(raw);
            let table = root
                .entry(section)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match table {
                toml::Value::Table(t) => {
                    t.insert(key, value);
                }
                _ => {
                    return Err(ConfigError::Env {
                        var: var.clone(),
                        reason: "section is not a table".into(),
                    })
                }
            }
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
            JwtAlgorithm::RS256 | JwtAlgorithm::ES256 if self.auth.jwt_public_key_file.is_empty() => {
                return Err(invalid(
                    "auth.jwt_public_key_file",
                    "RS256/ES256 need a PEM public key file",
                ))
            }
            _ => {}
        }
        if self.auth.api_keys.iter().any(|k| k.len() < 8) {
            return Err(invalid("auth.api_keys", "every API key needs at least 8 characters"));
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
        if self.store.cursor_flush_ms == 0 {
            return Err(invalid("store.cursor_flush_ms", "must be > 0"));
        }
        Ok(())
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
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[auth]\njwt_secret = \"0123456789abcdef\"\n";

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn repository_config_file_is_valid() {
        let text = include_str!("../config.toml");
        Config::from_sources(text, &BTreeMap::new()).expect("config.toml must load");
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
        let err = Config::from_sources(
            BASE,
            &env(&[("HERALD_SESSION__OUTBOUND_QUEUE", "0")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("session.outbound_queue"), "{err}");
        let err = Config::from_sources("[auth]\njwt_secret = \"short\"\n", &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth.jwt_secret"), "{err}");
        let err = Config::from_sources(
            BASE,
            &env(&[("HERALD_SESSION__HEARTBEAT_MS", "\"soon\"")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("heartbeat_ms"), "{err}");
    }

    #[test]
    fn heartbeat_timeout_is_derived_from_heartbeat_when_unset() {
        let cfg = Config::from_sources(BASE, &env(&[("HERALD_SESSION__HEARTBEAT_MS", "1000")]))
            .unwrap();
        assert_eq!(cfg.session.heartbeat_timeout(), Duration::from_millis(7000));
    }
}
