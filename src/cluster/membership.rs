//! Node liveness in Redis: publishing this node's `NodeInfo` with a TTL, reading which
//! registered nodes are still alive, and leaving cleanly on drain (key scheme in
//! `crate::redis`).
//!
//! "Liveness" is the node-level signal (a key that expires unless refreshed every
//! `routes.node_ttl_ms / 3`); the client-level "heartbeat" is the WebSocket ping and has
//! nothing to do with it.

use std::collections::HashMap;
use std::sync::Arc;

use redis_async::resp::{FromResp, RespValue};
use redis_async::resp_array;
use tracing::warn;

use super::NodeInfo;
use crate::ids::NodeId;
use crate::redis::{Keys, RedisConn, RedisError};

/// This node's membership in the cluster registry.
pub struct Membership {
    conn: Arc<RedisConn>,
    keys: Keys,
}

impl Membership {
    pub fn new(conn: Arc<RedisConn>, keys: Keys) -> Self {
        Self { conn, keys }
    }

    /// Publishes `me` (liveness key with `node_ttl_ms`, registry entry), then reads every
    /// registered node's liveness: returns the live ones and prunes the dead from the
    /// registry.
    pub async fn publish(
        &self,
        me: &NodeInfo,
        node_ttl_ms: u64,
    ) -> Result<HashMap<NodeId, NodeInfo>, RedisError> {
        // unwrap: NodeInfo serializes to JSON infallibly
        let json = serde_json::to_string(me).unwrap();
        let id = me.id.as_str();
        let ttl = node_ttl_ms.to_string();
        self.conn
            .pipeline(vec![
                resp_array!["SET", self.keys.node(id), json.as_str(), "PX", ttl],
                resp_array!["HSET", self.keys.nodes(), id, json.as_str()],
            ])
            .await?;
        let ids: Vec<String> = self
            .conn
            .cmd(resp_array!["HKEYS", self.keys.nodes()])
            .await?;
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut mget = resp_array!["MGET"];
        for i in &ids {
            mget.push(self.keys.node(i));
        }
        let vals: Vec<Option<String>> = match self.conn.cmd::<RespValue>(mget).await? {
            RespValue::Array(a) => a.into_iter().map(|v| String::from_resp(v).ok()).collect(),
            _ => Vec::new(),
        };
        let (live, dead) = split_live(&ids, vals);
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

    /// The liveness of `ids` read now (one MGET): `Some(info)` for each that is alive.
    /// For nodes a binding names that the live-peer view does not know yet.
    pub async fn lookup(&self, ids: &[NodeId]) -> Result<Vec<Option<NodeInfo>>, RedisError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut mget = resp_array!["MGET"];
        for i in ids {
            mget.push(self.keys.node(i.as_str()));
        }
        let vals: Vec<Option<String>> = match self.conn.cmd::<RespValue>(mget).await? {
            RespValue::Array(a) => a.into_iter().map(|v| String::from_resp(v).ok()).collect(),
            _ => Vec::new(),
        };
        Ok(ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let info = vals.get(i)?.as_deref()?;
                serde_json::from_str::<NodeInfo>(info)
                    .ok()
                    .filter(|n| &n.id == id)
            })
            .collect())
    }

    /// Deletes this node's liveness and registry entries (clean leave on drain).
    pub async fn leave(&self, node: &NodeId) -> Result<(), RedisError> {
        self.conn
            .pipeline(vec![
                resp_array!["DEL", self.keys.node(node.as_str())],
                resp_array!["HDEL", self.keys.nodes(), node.as_str()],
            ])
            .await
            .map(|_| ())
    }
}

/// Registered ids and their liveness values -> (live nodes, ids whose key is gone).
fn split_live(
    ids: &[String],
    vals: Vec<Option<String>>,
) -> (HashMap<NodeId, NodeInfo>, Vec<String>) {
    let mut live = HashMap::new();
    let mut dead = Vec::new();
    for (i, v) in ids.iter().zip(vals) {
        match v.and_then(|j| serde_json::from_str::<NodeInfo>(&j).ok()) {
            Some(info) => {
                live.insert(info.id.clone(), info);
            }
            None => dead.push(i.clone()),
        }
    }
    (live, dead)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_nodes_without_a_readable_liveness_key_are_dead() {
        let info = NodeInfo {
            id: NodeId::parse("n1").unwrap(),
            internal: "127.0.0.1:1".into(),
            public: "127.0.0.1:2".into(),
            started_ms: 5,
        };
        let ids = vec!["n1".to_string(), "n2".to_string(), "n3".to_string()];
        let vals = vec![
            Some(serde_json::to_string(&info).unwrap()),
            None,
            Some("not json".into()),
        ];
        let (live, dead) = split_live(&ids, vals);
        assert_eq!(live.len(), 1);
        assert_eq!(live[&info.id], info);
        assert_eq!(dead, vec!["n2".to_string(), "n3".to_string()]);
    }
}
