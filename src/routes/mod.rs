//! The route table: a cache of which nodes hold sessions of which users.
//!
//! It is never the source of truth (the message store is): a stale or missing route only
//! delays a message until the device reconnects and resumes. `memory.rs` is the embedded
//! single-node table.

pub mod keeper;
pub mod memory;
pub mod redis;

use async_trait::async_trait;

use crate::ids::{NodeId, UserId};

/// Route-table failures; callers log them and fall back to local delivery.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RouteError {
    #[error("route table unavailable: {0}")]
    Unavailable(String),
}

/// Backend interface for user -> node bindings.
#[async_trait]
pub trait RouteTable: Send + Sync + 'static {
    /// Binds (or re-binds, extending the TTL) each user to `node`.
    async fn bind(&self, node: &NodeId, users: &[UserId]) -> Result<(), RouteError>;
    /// Removes the binding of each user to `node`.
    async fn unbind(&self, node: &NodeId, users: &[UserId]) -> Result<(), RouteError>;
    /// The nodes holding sessions of each user, in the order asked.
    async fn lookup(&self, users: &[UserId]) -> Result<Vec<Vec<NodeId>>, RouteError>;
    /// Reachability, for `/readyz`.
    async fn health(&self) -> Result<(), RouteError>;
    /// Short backend name for logs and stats.
    fn name(&self) -> &'static str;
    /// Whether other nodes read this table (so a new session must be bound before it reads
    /// the store, or a message stored in between could be routed nowhere).
    fn shared(&self) -> bool {
        true
    }
}
