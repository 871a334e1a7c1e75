//! The node's actors: one [`session::WsSession`] per WebSocket, the [`hub::Hub`] that knows
//! which local sessions belong to which user, the [`dispatcher::Dispatcher`] that routes
//! stored messages, and the [`cursors::CursorWriter`] that batches ack-cursor writes.

pub mod cursors;
pub mod dispatcher;
pub mod hub;
pub mod messages;
pub mod session;
pub mod stats;
