//! Redis route table (`redis-async`), with the thin layer that makes it dependable: a
//! timeout on every call, lazy (re)connection, and explicit pipelining.
//!
//! # Key scheme (`<p>` is `routes.key_prefix`)
//! | key | type | content | lifetime |
//! | --- | --- | --- | --- |
//! | `<p>:route:<user>` | hash | field = node id, value = binding deadline (unix ms) | `PEXPIRE route_ttl`, renewed by every bind |
//! | `<p>:deadlines` | sorted set | member = `<node>\t<user>`, score = binding deadline | entries removed by unbind or the sweep |
//! | `<p>:node:<id>` | string | JSON [`NodeInfo`] | `PX node_ttl`, refreshed every `node_ttl / 3` |
//! | `<p>:nodes` | hash | field = node id, value = JSON [`NodeInfo`] (registry for the dashboard) | entries of dead nodes removed by live nodes |
//!
//! A binding counts only while its own deadline is in the future *and* its node's liveness
//! key exists, so a node that dies stops receiving forwards within `node_ttl`, and one
//! node's refresh never keeps another node's binding alive. Each hub re-binds all of its
//! users every `route_ttl / 3` in pipelined batches; client pings never touch Redis.
//!
//! Facts about `redis-async` 0.18 this layer works around: a paired connection reconnects
//! only when the next command runs (the one in flight fails); there is no per-command
//! timeout (a frozen Redis hangs a call), so every call here is wrapped in one; SUBSCRIBE
//! must use a separate pub/sub connection (see `keeper.rs`); there is no database
//! selection, so deployments are separated by key prefix and the expiry channel is db 0's.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::join_all;
use redis_async::client::{ConnectionBuilder, PairedConnection};
use redis_async::resp::{FromResp, RespValue};
use redis_async::resp_array;
use tracing::{info, warn};

use super::{RouteError, RouteTable};
use crate::cluster::{LivePeers, NodeInfo};
use crate::config::RoutesConfig;
use crate::ids::{NodeId, UserId};
use crate::clock::now_ms;

/// Most commands sent in one pipelined round.
const PIPELINE_CHUNK: usize = 3000;

/// A lazily (re)connected, timeout-guarded paired connection.
pub struct RedisConn {
    host: String,
    port: u16,
    password: String,
    timeout: Duration,
    conn: Mutex<Option<PairedConnection>>,
}

fn unavailable(what: impl std::fmt::Display) -> RouteError {
    RouteError::Unavailable(what.to_string())
}

impl RedisConn {
    pub fn new(cfg: &RoutesConfig) -> Result<Self, String> {
        let (host, port) = cfg.redis_host_port()?;
        Ok(Self {
            host,
            port,
            password: cfg.redis_password.clone(),
            timeout: cfg.op_timeout(),
            conn: Mutex::new(None),
        })
    }

    /// Host and port, for the pub/sub connection.
    pub fn builder(&self) -> Result<ConnectionBuilder, RouteError> {
        let mut b = ConnectionBuilder::new(self.host.clone(), self.port).map_err(unavailable)?;
        if !self.password.is_empty() {
            b.password(self.password.as_str());
        }
        Ok(b)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn conn(&self) -> Result<PairedConnection, RouteError> {
        if let Some(c) = self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(c);
        }
        let b = self.builder()?;
        let c = tokio::time::timeout(self.timeout, b.paired_connect())
            .await
            .map_err(|_| unavailable("connect timed out"))?
            .map_err(unavailable)?;
        info!(host = %self.host, port = self.port, "connected to redis");
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    /// Forgets the connection so the next call dials again (after a timeout the old one may
    /// be wedged behind a frozen server).
    fn reset(&self) {
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// One command with the timeout.
    pub async fn cmd<T: FromResp + Unpin>(&self, cmd: RespValue) -> Result<T, RouteError> {
        let c = self.conn().await?;
        match tokio::time::timeout(self.timeout, c.send::<T>(cmd)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if !matches!(e, redis_async::error::Error::Remote(_)) {
                    self.reset();
                }
                Err(unavailable(e))
            }
            Err(_) => {
                self.reset();
                Err(unavailable("command timed out"))
            }
        }
    }

    /// Sends `cmds` back to back (one round trip per chunk) and returns every reply.
    pub async fn pipeline(&self, cmds: Vec<RespValue>) -> Result<Vec<RespValue>, RouteError> {
        let c = self.conn().await?;
        let mut out = Vec::with_capacity(cmds.len());
        let mut cmds = cmds.into_iter().peekable();
        while cmds.peek().is_some() {
            let futs: Vec<_> = cmds
                .by_ref()
                .take(PIPELINE_CHUNK)
                .map(|cmd| c.send::<RespValue>(cmd))
                .collect();
            match tokio::time::timeout(self.timeout, join_all(futs)).await {
                Ok(results) => {
                    for r in results {
                        match r {
                            Ok(v) => out.push(v),
                            Err(e) => {
                                if !matches!(e, redis_async::error::Error::Remote(_)) {
                                    self.reset();
                                }
                                return Err(unavailable(e));
                            }
                        }
                    }
                }
                Err(_) => {
                    self.reset();
                    return Err(unavailable("pipeline timed out"));
                }
            }
        }
        Ok(out)
    }
}

/// Redis key names for one prefix.
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

/// The Redis [`RouteTable`].
pub struct RedisRoutes {
    pub conn: RedisConn,
    pub keys: Keys,
    route_ttl_ms: u64,
    live: LivePeers,
}

impl RedisRoutes {
    pub fn new(cfg: &RoutesConfig, live: LivePeers) -> Result<Self, String> {
        Ok(Self {
            conn: RedisConn::new(cfg)?,
            keys: Keys::new(&cfg.key_prefix),
            route_ttl_ms: cfg.route_ttl_ms,
            live,
        })
    }

    /// Publishes this node's liveness and registry entry, then reads every registered
    /// node's liveness: returns the live ones.
    pub async fn heartbeat(
        &self,
        me: &NodeInfo,
        node_ttl_ms: u64,
    ) -> Result<std::collections::HashMap<NodeId, NodeInfo>, RouteError> {
        // unwrap: NodeInfo serializes to JSON infallibly
        let json = serde_json::to_string(me).unwrap();
        let id = me.id.as_str();
        self.conn
            .pipeline(vec![
                resp_array![
                    "SET",
                    self.keys.node(id),
                    json.as_str(),
                    "PX",
                    node_ttl_ms.to_string()
                ],
                resp_array!["HSET", self.keys.nodes(), id, json.as_str()],
            ])
            .await?;
        let ids: Vec<String> = self
            .conn
            .cmd(resp_array!["HKEYS", self.keys.nodes()])
            .await?;
        let mut live = std::collections::HashMap::new();
        if ids.is_empty() {
            return Ok(live);
        }
        let mut mget = resp_array!["MGET"];
        for i in &ids {
            mget.push(self.keys.node(i));
        }
        let vals: Vec<Option<String>> = match self.conn.cmd::<RespValue>(mget).await? {
            RespValue::Array(a) => a.into_iter().map(|v| String::from_resp(v).ok()).collect(),
            _ => Vec::new(),
        };
        let mut dead = Vec::new();
        for (i, v) in ids.iter().zip(vals) {
            match v.and_then(|j| serde_json::from_str::<NodeInfo>(&j).ok()) {
                Some(info) => {
                    live.insert(info.id.clone(), info);
                }
                None => dead.push(i.clone()),
            }
        }
        if !dead.is_empty() {
            let mut hdel = resp_array!["HDEL", self.keys.nodes()];
            for d in &dead {
                hdel.push(d.as_str());
            }
            if let Err(e) = self.conn.cmd::<i64>(hdel).await {
                warn!(error = %e, "could not prune dead nodes from the registry");
            }
        }
        Ok(live)
    }

    /// Bindings whose deadline passed, as (node, user), at most `limit`.
    pub async fn overdue(&self, limit: usize) -> Result<Vec<(String, String)>, RouteError> {
        let members: Vec<String> = self
            .conn
            .cmd(resp_array![
                "ZRANGEBYSCORE",
                self.keys.deadlines(),
                "-inf",
                now_ms().to_string(),
                "LIMIT",
                "0",
                limit.to_string()
            ])
            .await?;
        Ok(members
            .into_iter()
            .filter_map(|m| {
                m.split_once('\t')
                    .map(|(n, u)| (n.to_string(), u.to_string()))
            })
            .collect())
    }

    /// Removes bindings of nodes that are gone.
    pub async fn remove_bindings(&self, pairs: &[(String, String)]) -> Result<(), RouteError> {
        let mut cmds = Vec::with_capacity(pairs.len() * 2);
        for (node, user) in pairs {
            cmds.push(resp_array!["HDEL", self.keys.route(user), node.as_str()]);
            cmds.push(resp_array![
                "ZREM",
                self.keys.deadlines(),
                Keys::member(node, user)
            ]);
        }
        self.conn.pipeline(cmds).await.map(|_| ())
    }

    /// Merges the expired-key-event flags into `notify-keyspace-events` without dropping
    /// what is already set. Returns false when the server refuses CONFIG (managed Redis).
    pub async fn ensure_expiry_events(&self) -> Result<bool, RouteError> {
        let current: Vec<String> = match self
            .conn
            .cmd(resp_array!["CONFIG", "GET", "notify-keyspace-events"])
            .await
        {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %e, "CONFIG GET refused; relying on the deadline sweep for expiries");
                return Ok(false);
            }
        };
        let flags = current.get(1).cloned().unwrap_or_default();
        let has_e = flags.contains('E');
        let has_x = flags.contains('x') || flags.contains('A');
        if has_e && has_x {
            return Ok(true);
        }
        let mut merged = flags.clone();
        if !has_e {
            merged.push('E');
        }
        if !has_x {
            merged.push('x');
        }
        match self
            .conn
            .cmd::<String>(resp_array![
                "CONFIG",
                "SET",
                "notify-keyspace-events",
                merged.as_str()
            ])
            .await
        {
            Ok(_) => {
                info!(from = %flags, to = %merged, "enabled redis expired-key events");
                Ok(true)
            }
            Err(e) => {
                warn!(error = %e, "CONFIG SET refused; relying on the deadline sweep for expiries");
                Ok(false)
            }
        }
    }

    /// Deletes this node's liveness and registry entries (clean leave on drain).
    pub async fn leave(&self, node: &NodeId) -> Result<(), RouteError> {
        self.conn
            .pipeline(vec![
                resp_array!["DEL", self.keys.node(node.as_str())],
                resp_array!["HDEL", self.keys.nodes(), node.as_str()],
            ])
            .await
            .map(|_| ())
    }
}

fn pairs(v: RespValue) -> Vec<(String, String)> {
    let RespValue::Array(items) = v else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        if let (Ok(k), Ok(v)) = (String::from_resp(k), String::from_resp(v)) {
            out.push((k, v));
        }
    }
    out
}

#[async_trait]
impl RouteTable for RedisRoutes {
    async fn bind(&self, node: &NodeId, users: &[UserId]) -> Result<(), RouteError> {
        let deadline = (now_ms() + self.route_ttl_ms).to_string();
        let ttl = self.route_ttl_ms.to_string();
        let mut cmds = Vec::with_capacity(users.len() * 3);
        for u in users {
            let key = self.keys.route(u.as_str());
            cmds.push(resp_array![
                "HSET",
                key.as_str(),
                node.as_str(),
                deadline.as_str()
            ]);
            cmds.push(resp_array!["PEXPIRE", key, ttl.as_str()]);
            cmds.push(resp_array![
                "ZADD",
                self.keys.deadlines(),
                deadline.as_str(),
                Keys::member(node.as_str(), u.as_str())
            ]);
        }
        self.conn.pipeline(cmds).await.map(|_| ())
    }

    async fn unbind(&self, node: &NodeId, users: &[UserId]) -> Result<(), RouteError> {
        let pairs: Vec<(String, String)> = users
            .iter()
            .map(|u| (node.to_string(), u.to_string()))
            .collect();
        self.remove_bindings(&pairs).await
    }

    async fn lookup(&self, users: &[UserId]) -> Result<Vec<Vec<NodeId>>, RouteError> {
        let cmds = users
            .iter()
            .map(|u| resp_array!["HGETALL", self.keys.route(u.as_str())])
            .collect();
        let replies = self.conn.pipeline(cmds).await?;
        let now = now_ms();
        Ok(replies
            .into_iter()
            .map(|r| {
                pairs(r)
                    .into_iter()
                    .filter(|(_, deadline)| deadline.parse::<u64>().is_ok_and(|d| d > now))
                    .filter_map(|(node, _)| NodeId::parse(&node).ok())
                    .filter(|n| self.live.is_live(n))
                    .collect()
            })
            .collect())
    }

    async fn health(&self) -> Result<(), RouteError> {
        self.conn
            .cmd::<String>(resp_array!["PING"])
            .await
            .map(|_| ())
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}
