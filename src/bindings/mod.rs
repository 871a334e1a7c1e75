//! User -> node bindings: a cache of which nodes hold sessions of which users.
//!
//! It is never the source of truth (the message store is): a stale or missing binding only
//! delays a message until the device reconnects and resumes. Which bound nodes are alive is
//! not this table's business: dispatch asks `cluster::LivePeers`. `memory.rs` is the
//! embedded single-node table, `redis.rs` the cluster one.

pub mod memory;
pub mod redis;

use async_trait::async_trait;

use crate::ids::{NodeId, UserId};

/// Binding-table failures; callers log them and fall back to local delivery.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BindingsError {
    #[error("binding table unavailable: {0}")]
    Unavailable(String),
}

impl From<crate::redis::RedisError> for BindingsError {
    fn from(e: crate::redis::RedisError) -> Self {
        BindingsError::Unavailable(e.0)
    }
}

/// Backend interface for user -> node bindings.
#[async_trait]
pub trait Bindings: Send + Sync + 'static {
    /// Binds (or re-binds, extending the TTL) each user to `node`.
    async fn bind(&self, node: &NodeId, users: &[UserId]) -> Result<(), BindingsError>;
    /// Removes the binding of each user to `node`.
    async fn unbind(&self, node: &NodeId, users: &[UserId]) -> Result<(), BindingsError>;
    /// The nodes bound to each user (bindings not past their deadline), in the order asked.
    async fn lookup(&self, users: &[UserId]) -> Result<Vec<Vec<NodeId>>, BindingsError>;
    /// Reachability, for `/readyz`.
    async fn health(&self) -> Result<(), BindingsError>;
    /// Short backend name for logs and stats.
    fn name(&self) -> &'static str;
    /// Whether other nodes read this table (so a new session must be bound before it reads
    /// the store, or a message stored in between could be routed nowhere).
    fn shared(&self) -> bool {
        true
    }
}
