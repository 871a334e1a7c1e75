//! HTTP surface: the WebSocket upgrade, the producer REST API and the operations endpoints.
//! Every handler reads [`AppState`]; every error leaves through [`error::ApiError`].

pub mod api;
pub mod error;
pub mod ops;
pub mod ws;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use actix::Addr;
use actix_web::web;

use crate::actors::cursors::CursorWriter;
use crate::actors::dispatcher::Dispatcher;
use crate::actors::hub::Hub;
use crate::actors::session::SessionDeps;
use crate::actors::stats::Counters;
use crate::auth::ApiKeys;
use crate::config::Config;
use crate::ids::NodeId;
use crate::routes::RouteTable;
use crate::store::MessageStore;

/// Shared state of one node, handed to every handler.
pub struct AppState {
    pub cfg: Arc<Config>,
    pub node: NodeId,
    pub api_keys: ApiKeys,
    pub store: Arc<dyn MessageStore>,
    /// Ingestion's path to the store (group commit for remote stores).
    pub appender: crate::store::batcher::Appender,
    pub routes: Arc<dyn RouteTable>,
    /// Live cluster nodes (empty on a single node).
    pub live: crate::cluster::LivePeers,
    pub hub: Addr<Hub>,
    pub cursors: Addr<CursorWriter>,
    pub dispatcher: Dispatcher,
    pub session: Arc<SessionDeps>,
    pub counters: Arc<Counters>,
    /// Set when the node starts draining: `/readyz` fails and new sockets are refused.
    pub draining: AtomicBool,
    /// Session cap (see `Config::max_sessions`).
    pub max_sessions: usize,
    pub started: Instant,
}

/// Registers every public route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws", web::get().to(ws::upgrade))
        .route("/healthz", web::get().to(ops::healthz))
        .route("/readyz", web::get().to(ops::readyz))
        .route("/api/v1/stats", web::get().to(ops::stats))
        .route("/api/v1/messages", web::post().to(api::post_message))
        .route("/api/v1/messages/batch", web::post().to(api::post_batch))
        .route("/api/v1/users/{user}/messages", web::get().to(api::history))
        .route(
            "/api/v1/users/{user}/presence",
            web::get().to(api::presence),
        )
        .default_service(web::to(ops::not_found));
}
