//! The Redis binding table: `<p>:route:<user>` hashes and the `<p>:deadlines` sweep index
//! (key scheme in `crate::redis`).
//!
//! A binding counts only while its own deadline is in the future, so one node's refresh
//! never keeps another node's binding alive. Each hub re-binds all of its users every
//! `route_ttl / 3` in pipelined batches (3 commands per user); client pings never touch
//! Redis. Bindings of dead nodes are removed by the sweep (`actors::keeper`); until then
//! dispatch skips them because their node is not in `cluster::LivePeers`.

use std::sync::Arc;

use async_trait::async_trait;
use redis_async::resp::{FromResp, RespValue};
use redis_async::resp_array;

use super::{Bindings, BindingsError};
use crate::clock::now_ms;
use crate::ids::{NodeId, UserId};
use crate::redis::{Keys, RedisConn};

/// The Redis [`Bindings`] table.
pub struct RedisBindings {
    conn: Arc<RedisConn>,
    keys: Keys,
    route_ttl_ms: u64,
}

impl RedisBindings {
    pub fn new(conn: Arc<RedisConn>, keys: Keys, route_ttl_ms: u64) -> Self {
        Self {
            conn,
            keys,
            route_ttl_ms,
        }
    }

    /// Bindings whose deadline passed, as (node, user), at most `limit`.
    pub async fn overdue(&self, limit: usize) -> Result<Vec<(String, String)>, BindingsError> {
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

    /// Removes the given (node, user) bindings.
    pub async fn remove(&self, pairs: &[(String, String)]) -> Result<(), BindingsError> {
        let mut cmds = Vec::with_capacity(pairs.len() * 2);
        for (node, user) in pairs {
            cmds.push(resp_array!["HDEL", self.keys.route(user), node.as_str()]);
            cmds.push(resp_array![
                "ZREM",
                self.keys.deadlines(),
                Keys::member(node, user)
            ]);
        }
        self.conn.pipeline(cmds).await?;
        Ok(())
    }
}

/// The (field, value) pairs of an `HGETALL` reply.
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

/// The nodes of one `<p>:route:<user>` hash whose binding deadline is after `now`.
fn bound_nodes(reply: RespValue, now: u64) -> Vec<NodeId> {
    pairs(reply)
        .into_iter()
        .filter(|(_, deadline)| deadline.parse::<u64>().is_ok_and(|d| d > now))
        .filter_map(|(node, _)| NodeId::parse(&node).ok())
        .collect()
}

#[async_trait]
impl Bindings for RedisBindings {
    async fn bind(&self, node: &NodeId, users: &[UserId]) -> Result<(), BindingsError> {
        let deadline = now_ms().saturating_add(self.route_ttl_ms).to_string();
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
        self.conn.pipeline(cmds).await?;
        Ok(())
    }

    async fn unbind(&self, node: &NodeId, users: &[UserId]) -> Result<(), BindingsError> {
        let pairs: Vec<(String, String)> = users
            .iter()
            .map(|u| (node.to_string(), u.to_string()))
            .collect();
        self.remove(&pairs).await
    }

    async fn lookup(&self, users: &[UserId]) -> Result<Vec<Vec<NodeId>>, BindingsError> {
        let cmds = users
            .iter()
            .map(|u| resp_array!["HGETALL", self.keys.route(u.as_str())])
            .collect();
        let replies = self.conn.pipeline(cmds).await?;
        let now = now_ms();
        Ok(replies.into_iter().map(|r| bound_nodes(r, now)).collect())
    }

    async fn health(&self) -> Result<(), BindingsError> {
        Ok(self.conn.ping().await?)
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> RespValue {
        RespValue::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn only_bindings_before_their_deadline_count() {
        let reply = RespValue::Array(vec![
            bulk("n1"),
            bulk("2000"),
            bulk("n2"),
            bulk("999"),
            bulk("bad id!"),
            bulk("5000"),
            bulk("n3"),
            bulk("not a number"),
        ]);
        assert_eq!(bound_nodes(reply, 1000), vec![NodeId::parse("n1").unwrap()]);
        assert!(bound_nodes(RespValue::Nil, 0).is_empty());
    }
}
