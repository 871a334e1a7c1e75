//! Node configuration: the TOML file, `HERALD_*` environment overrides, validation. Each
//! section lives in its own file with the checks of its keys; [`Config::validate`] runs them
//! and adds the checks that span sections.
//!
//! [`Config::from_sources`] takes the file text and an environment map, so tests feed it
//! values directly. An override `HERALD_SESSION__HEARTBEAT_MS=500` sets `session.heartbeat_ms`
//! (double underscores separate table names and the key, so `HERALD_STORE__MONGO__URL` sets
//! `store.mongo.url`). Unknown keys and bad values fail at startup with a message naming the
//! key. Whether the secrets may face a network depends on the listeners and the
//! `--insecure-dev` flag, so `secrets.rs` judges that separately, at startup.

mod auth;
mod cluster;
mod metrics;
pub mod secrets;
mod server;
mod session;
mod store;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

pub use self::auth::{AuthConfig, AuthMode, HttpAuthConfig, JwtAlgorithm};
pub use self::cluster::{ClusterConfig, RoutesBackend, RoutesConfig};
pub use self::metrics::MetricsConfig;
pub use self::server::{HubThreads, IpNet, LogConfig, LogFormat, NodeConfig, ServerConfig};
pub use self::session::{IngestConfig, SessionConfig};
pub use self::store::{MongoStoreConfig, StoreBackend, StoreConfig, APPEND_BUDGET_CALLS};

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
    pub metrics: MetricsConfig,
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

    /// Checks values that parse but make no sense: each section's own checks, then the
    /// ones that span sections.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.node.validate()?;
        self.server.validate()?;
        self.auth.validate()?;
        self.session.validate()?;
        self.ingest.validate()?;
        self.store.validate()?;
        self.routes.validate()?;
        self.cluster.validate()?;
        self.metrics.validate()?;
        if self.routes.backend == RoutesBackend::Redis && self.cluster.secret.len() < 16 {
            return Err(invalid(
                "cluster.secret",
                "cluster mode needs a shared secret of at least 16 bytes",
            ));
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
