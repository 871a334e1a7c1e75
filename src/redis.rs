//! The thin, dependable layer over `redis-async` that bindings and cluster membership share:
//! a timeout on every call, lazy (re)connection, explicit pipelining, the key scheme, and the
//! server-level calls (`run_id`, expired-key events, the pub/sub subscription).
//!
//! # Key scheme (`<p>` is `routes.key_prefix`)
//! | key | type | content | lifetime | owner |
//! | --- | --- | --- | --- | --- |
//! | `<p>:route:<user>` | hash | field = node id, value = binding deadline (unix ms) | `PEXPIRE route_ttl`, renewed by every bind | `bindings::redis` |
//! | `<p>:deadlines` | sorted set | member = `<node>\t<user>`, score = binding deadline | entries removed by unbind or the sweep | `bindings::redis` |
//! | `<p>:node:<id>` | string | JSON `NodeInfo` | `PX node_ttl`, refreshed every `node_ttl / 3` | `cluster::membership` |
//! | `<p>:nodes` | hash | field = node id, value = JSON `NodeInfo` (registry for the dashboard) | entries of dead nodes removed by live nodes | `cluster::membership` |
//!
//! Facts about `redis-async` 0.18 this layer works around: a paired connection reconnects
//! only when the next command runs (the one in flight fails); there is no per-command
//! timeout (a frozen Redis hangs a call), so every call here is wrapped in one; SUBSCRIBE
//! must use a separate pub/sub connection; there is no database selection, so deployments
//! are separated by key prefix and the expiry channel is db 0's.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use redis_async::client::{ConnectionBuilder, PairedConnection, PubsubConnection};
use redis_async::resp::{FromResp, RespValue};
use redis_async::resp_array;
use tracing::{info, warn};

use crate::config::RoutesConfig;
use crate::metrics::Counters;

/// Most commands sent in one pipelined round.
const PIPELINE_CHUNK: usize = 3000;
/// The channel of expired-key events (database 0).
pub const EXPIRED_CHANNEL: &str = "__keyevent@0__:expired";

/// Redis is unreachable, slow, or refused a call; the text is for logs.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RedisError(pub String);

fn failed(what: impl std::fmt::Display) -> RedisError {
    RedisError(what.to_string())
}

/// A lazily (re)connected, timeout-guarded paired connection.
pub struct RedisConn {
    host: String,
    port: u16,
    password: String,
    timeout: Duration,
    conn: Mutex<Option<PairedConnection>>,
    /// Where each command's latency is recorded (`herald_redis_op_seconds{command}`).
    counters: Option<Arc<Counters>>,
}

/// The command word of `cmd` (`GET`, `HSET`...), for the latency label.
fn command_name(cmd: &RespValue) -> &[u8] {
    match cmd {
        RespValue::Array(parts) => match parts.first() {
            Some(RespValue::BulkString(b)) => b,
            _ => b"other",
        },
        _ => b"other",
    }
}

impl RedisConn {
    /// A connection to `routes.redis_url`; nothing is dialled until the first call.
    pub fn new(cfg: &RoutesConfig) -> Result<Self, String> {
        let (host, port) = cfg.redis_host_port()?;
        Ok(Self {
            host,
            port,
            password: cfg.redis_password.clone(),
            timeout: cfg.op_timeout(),
            conn: Mutex::new(None),
            counters: None,
        })
    }

    /// Records every command's latency and failures into `counters`.
    pub fn timed(mut self, counters: Arc<Counters>) -> Self {
        self.counters = Some(counters);
        self
    }

    fn observe<T>(&self, name: &[u8], start: Instant, res: &Result<T, RedisError>) {
        if let Some(c) = &self.counters {
            c.ops.redis.op(name).observe(start, res.is_ok());
        }
    }

    fn builder(&self) -> Result<ConnectionBuilder, RedisError> {
        let mut b = ConnectionBuilder::new(self.host.clone(), self.port).map_err(failed)?;
        if !self.password.is_empty() {
            b.password(self.password.as_str());
        }
        Ok(b)
    }

    async fn conn(&self) -> Result<PairedConnection, RedisError> {
        if let Some(c) = self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(c);
        }
        let b = self.builder()?;
        let c = tokio::time::timeout(self.timeout, b.paired_connect())
            .await
            .map_err(|_| failed("connect timed out"))?
            .map_err(failed)?;
        info!(host = %self.host, port = self.port, "connected to redis");
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    /// Forgets the connection so the next call dials again (after a timeout the old one may
    /// be wedged behind a frozen server).
    fn reset(&self) {
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn on_error(&self, e: redis_async::error::Error) -> RedisError {
        if !matches!(e, redis_async::error::Error::Remote(_)) {
            self.reset();
        }
        failed(e)
    }

    /// One command with the timeout.
    pub async fn cmd<T: FromResp + Unpin>(&self, cmd: RespValue) -> Result<T, RedisError> {
        let mut name = [0u8; 16];
        let word = command_name(&cmd);
        let n = word.len().min(name.len());
        name[..n].copy_from_slice(&word[..n]);
        let start = Instant::now();
        let res = self.cmd_untimed(cmd).await;
        self.observe(&name[..n], start, &res);
        res
    }

    async fn cmd_untimed<T: FromResp + Unpin>(&self, cmd: RespValue) -> Result<T, RedisError> {
        let c = self.conn().await?;
        match tokio::time::timeout(self.timeout, c.send::<T>(cmd)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.on_error(e)),
            Err(_) => {
                self.reset();
                Err(failed("command timed out"))
            }
        }
    }

    /// Sends `cmds` back to back (one round trip per chunk) and returns every reply.
    pub async fn pipeline(&self, cmds: Vec<RespValue>) -> Result<Vec<RespValue>, RedisError> {
        let start = Instant::now();
        let res = self.pipeline_untimed(cmds).await;
        self.observe(b"pipeline", start, &res);
        res
    }

    async fn pipeline_untimed(&self, cmds: Vec<RespValue>) -> Result<Vec<RespValue>, RedisError> {
        let c = self.conn().await?;
        let mut out = Vec::with_capacity(cmds.len());
        let mut cmds = cmds.into_iter().peekable();
        while cmds.peek().is_some() {
            let futs: Vec<_> = cmds
                .by_ref()
                .take(PIPELINE_CHUNK)
                .map(|cmd| c.send::<RespValue>(cmd))
                .collect();
            let Ok(results) = tokio::time::timeout(self.timeout, join_all(futs)).await else {
                self.reset();
                return Err(failed("pipeline timed out"));
            };
            for r in results {
                out.push(r.map_err(|e| self.on_error(e))?);
            }
        }
        Ok(out)
    }

    /// Reachability (`PING`).
    pub async fn ping(&self) -> Result<(), RedisError> {
        self.cmd::<String>(resp_array!["PING"]).await.map(|_| ())
    }

    /// The server's `run_id`: it changes when Redis restarts (possibly empty).
    pub async fn run_id(&self) -> Option<String> {
        let info: String = self.cmd(resp_array!["INFO", "server"]).await.ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .map(|s| s.trim().to_string())
    }

    /// A separate pub/sub connection subscribed to `channel`, within the timeout.
    pub async fn subscribe(
        &self,
        channel: &str,
    ) -> Result<(PubsubConnection, redis_async::client::pubsub::PubsubStream), RedisError> {
        let b = self.builder()?;
        let conn = tokio::time::timeout(self.timeout, b.pubsub_connect())
            .await
            .map_err(|_| failed("pub/sub connect timed out"))?
            .map_err(failed)?;
        let stream = tokio::time::timeout(self.timeout, conn.subscribe(channel))
            .await
            .map_err(|_| failed("subscribe timed out"))?
            .map_err(failed)?;
        Ok((conn, stream))
    }

    /// Merges the expired-key-event flags into `notify-keyspace-events` without dropping
    /// what is already set. Returns false when the server refuses CONFIG (managed Redis):
    /// the deadline sweep then does all the cleanup.
    pub async fn ensure_expiry_events(&self) -> bool {
        let current: Vec<String> = match self
            .cmd(resp_array!["CONFIG", "GET", "notify-keyspace-events"])
            .await
        {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %e, "CONFIG GET refused; relying on the deadline sweep for expiries");
                return false;
            }
        };
        let flags = current.get(1).cloned().unwrap_or_default();
        let Some(merged) = merged_event_flags(&flags) else {
            return true;
        };
        let set = resp_array!["CONFIG", "SET", "notify-keyspace-events", merged.as_str()];
        match self.cmd::<String>(set).await {
            Ok(_) => {
                info!(from = %flags, to = %merged, "enabled redis expired-key events");
                true
            }
            Err(e) => {
                warn!(error = %e, "CONFIG SET refused; relying on the deadline sweep for expiries");
                false
            }
        }
    }
}

/// The `notify-keyspace-events` value that adds keyevent (`E`) and expired (`x`) events to
/// `flags`, or `None` when they are already on (`A` includes `x`).
fn merged_event_flags(flags: &str) -> Option<String> {
    let has_e = flags.contains('E');
    let has_x = flags.contains('x') || flags.contains('A');
    if has_e && has_x {
        return None;
    }
    let mut merged = flags.to_string();
    if !has_e {
        merged.push('E');
    }
    if !has_x {
        merged.push('x');
    }
    Some(merged)
}

/// Redis key names for one prefix (see the table above).
#[derive(Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    pub fn route(&self, user: &str) -> String {
        format!("{}:route:{user}", self.prefix)
    }

    pub fn route_prefix(&self) -> String {
        format!("{}:route:", self.prefix)
    }

    pub fn deadlines(&self) -> String {
        format!("{}:deadlines", self.prefix)
    }

    pub fn node(&self, id: &str) -> String {
        format!("{}:node:{id}", self.prefix)
    }

    pub fn node_prefix(&self) -> String {
        format!("{}:node:", self.prefix)
    }

    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// Sorted-set member of a binding.
    pub fn member(node: &str, user: &str) -> String {
        format!("{node}\t{user}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_flags_are_merged_without_dropping_existing_ones() {
        assert_eq!(merged_event_flags("").as_deref(), Some("Ex"));
        assert_eq!(merged_event_flags("Kg").as_deref(), Some("KgEx"));
        assert_eq!(merged_event_flags("Ex"), None);
        assert_eq!(merged_event_flags("KEA"), None);
        assert_eq!(merged_event_flags("Kx").as_deref(), Some("KxE"));
    }

    #[test]
    fn keys_share_one_prefix_and_members_split_on_tab() {
        let k = Keys::new("hx");
        assert_eq!(k.route("u1"), "hx:route:u1");
        assert!(k.route("u1").starts_with(&k.route_prefix()));
        assert_eq!(k.node("n1"), "hx:node:n1");
        assert!(k.node("n1").starts_with(&k.node_prefix()));
        assert_eq!(k.deadlines(), "hx:deadlines");
        assert_eq!(k.nodes(), "hx:nodes");
        assert_eq!(
            Keys::member("n1", "u1").split_once('\t'),
            Some(("n1", "u1"))
        );
    }
}
