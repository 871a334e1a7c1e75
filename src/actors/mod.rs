//! The node's actors, each behind a handle whose messages are private to its module: one
//! session per WebSocket (`session`), the [`hub::HubHandle`] that knows which local sessions
//! belong to which user, the [`dispatch::DispatchHandle`] that routes stored messages (with
//! one forwarding actor per peer node, `peer`), the [`cursors::CursorsHandle`] that batches
//! ack-cursor writes, and the `keeper` tasks that keep liveness and bindings fresh in Redis.

pub mod ask;
pub mod cursors;
pub mod dispatch;
pub mod hub;
pub mod keeper;
pub mod peer;
pub mod positions;
pub mod session;
mod settle;
