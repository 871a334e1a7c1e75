//! Cluster membership in one place: what a node publishes about itself ([`NodeInfo`]),
//! which peers are alive ([`LivePeers`], refreshed from `membership.rs`), how node-to-node
//! requests are signed (`sign.rs`) and what a forward looks like on the wire
//! (`forward.rs`). The forwarding actors live in `actors::peer`, the endpoint that receives
//! forwards in `http::internal`.

pub mod forward;
pub mod membership;
pub mod sign;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::ids::NodeId;

/// What a node publishes about itself in the registry (`<prefix>:node:<id>`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: NodeId,
    /// `host:port` of the internal listener, for forwards.
    pub internal: String,
    /// `host:port` of the public listener, for operators and the dashboard.
    pub public: String,
    pub started_ms: u64,
}

/// The set of nodes whose liveness key was present at the last refresh: dispatch forwards
/// only to these (and needs their addresses), presence reports only these.
#[derive(Debug, Default, Clone)]
pub struct LivePeers {
    inner: Arc<RwLock<PeersView>>,
}

#[derive(Debug, Default)]
struct PeersView {
    /// False until the first successful refresh: every node counts as live before it.
    loaded: bool,
    nodes: HashMap<NodeId, NodeInfo>,
}

impl LivePeers {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, PeersView> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, PeersView> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the view; returns the ids that were live before and are gone now.
    pub fn replace(&self, nodes: HashMap<NodeId, NodeInfo>) -> Vec<NodeId> {
        let mut v = self.write();
        let gone = v
            .nodes
            .keys()
            .filter(|id| !nodes.contains_key(*id))
            .cloned()
            .collect();
        v.nodes = nodes;
        v.loaded = true;
        gone
    }

    /// Adds one node found alive outside a refresh (a binding named it first).
    pub fn insert(&self, info: NodeInfo) {
        self.write().nodes.insert(info.id.clone(), info);
    }

    /// Drops one node at once (its liveness key expired).
    pub fn remove(&self, id: &NodeId) -> bool {
        self.write().nodes.remove(id).is_some()
    }

    /// Whether `id` counts as alive (everything does before the first refresh).
    pub fn is_live(&self, id: &NodeId) -> bool {
        let v = self.read();
        !v.loaded || v.nodes.contains_key(id)
    }

    /// Whether `id` is in the view (without copying its info).
    pub fn contains(&self, id: &NodeId) -> bool {
        self.read().nodes.contains_key(id)
    }

    pub fn get(&self, id: &NodeId) -> Option<NodeInfo> {
        self.read().nodes.get(id).cloned()
    }

    /// Keeps only the live nodes of `nodes`.
    pub fn retain_live(&self, nodes: &mut Vec<NodeId>) {
        let v = self.read();
        if v.loaded {
            nodes.retain(|n| v.nodes.contains_key(n));
        }
    }

    /// Every live node.
    pub fn all(&self) -> Vec<NodeInfo> {
        let mut v: Vec<NodeInfo> = self.read().nodes.values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str) -> NodeInfo {
        NodeInfo {
            id: NodeId::parse(id).unwrap(),
            internal: format!("{id}:1"),
            public: format!("{id}:2"),
            started_ms: 0,
        }
    }

    #[test]
    fn every_node_counts_as_live_until_the_first_refresh() {
        let live = LivePeers::default();
        let n1 = NodeId::parse("n1").unwrap();
        assert!(live.is_live(&n1));
        let mut nodes = vec![n1.clone()];
        live.retain_live(&mut nodes);
        assert_eq!(nodes, vec![n1]);
    }

    #[test]
    fn a_refresh_reports_the_nodes_that_went_away() {
        let live = LivePeers::default();
        let (a, b) = (info("a"), info("b"));
        live.replace(HashMap::from([
            (a.id.clone(), a.clone()),
            (b.id.clone(), b.clone()),
        ]));
        let gone = live.replace(HashMap::from([(a.id.clone(), a.clone())]));
        assert_eq!(gone, vec![b.id.clone()]);
        assert!(!live.is_live(&b.id));
        let mut nodes = vec![a.id.clone(), b.id.clone()];
        live.retain_live(&mut nodes);
        assert_eq!(nodes, vec![a.id.clone()]);
        assert!(live.remove(&a.id));
        assert!(live.all().is_empty());
    }
}
