//! Cluster plumbing: who the live peers are, how node-to-node requests are signed, the
//! per-peer forwarding actors and the internal `/internal/v1/deliver` endpoint.

pub mod internal;
pub mod peer;
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

/// The set of nodes whose liveness key was present at the last refresh, shared between the
/// route table (which filters lookups by it) and the dispatchers (which need addresses).
#[derive(Debug, Default, Clone)]
pub struct LivePeers {
    inner: Arc<RwLock<PeersView>>,
}

#[derive(Debug, Default)]
struct PeersView {
    /// False until the first successful refresh: lookups are not filtered before it.
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

    /// Drops one node at once (its liveness key expired).
    pub fn remove(&self, id: &NodeId) -> bool {
        self.write().nodes.remove(id).is_some()
    }

    /// Whether `id` counts as alive (everything does before the first refresh).
    pub fn is_live(&self, id: &NodeId) -> bool {
        let v = self.read();
        !v.loaded || v.nodes.contains_key(id)
    }

    pub fn get(&self, id: &NodeId) -> Option<NodeInfo> {
        self.read().nodes.get(id).cloned()
    }

    /// Every live node.
    pub fn all(&self) -> Vec<NodeInfo> {
        let mut v: Vec<NodeInfo> = self.read().nodes.values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}
