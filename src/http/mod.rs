//! HTTP surface: the WebSocket upgrade (`ws.rs`: its checks; `upgrade.rs`: the socket
//! taken from the HTTP/1 dispatcher), the producer REST API (`api.rs`; a
//! user's history and presence in `users.rs`, a message's delivery status in `status.rs`),
//! the operations endpoints (`ops.rs`, operator access in `admin.rs`), the cluster dashboard
//! (`dashboard/`), the demo page and JS client (`demo.rs`), the OpenAPI document of all of
//! these (`openapi.rs`) and the internal node-to-node endpoint (`internal/`, on its own
//! listener). Nothing on the public listener shows an internal listener address. Handlers
//! parse, call one service, and answer; every error leaves through [`error::ApiError`].

pub mod admin;
pub mod api;
pub mod client;
pub mod dashboard;
pub mod demo;
pub mod error;
pub mod internal;
pub mod openapi;
pub mod ops;
pub mod status;
pub mod upgrade;
pub mod users;
pub mod ws;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header;
use actix_web::{web, HttpRequest};

use crate::actors::ask::PeerAsk;
use crate::actors::hub::HubHandle;
use crate::actors::session::SessionDeps;
use crate::auth::ApiKeys;
use crate::bindings::Bindings;
use crate::cluster::LivePeers;
use crate::ids::NodeId;
use crate::ingest::Ingest;
use crate::metrics::Counters;
use crate::store::MessageStore;

/// The backends handlers read directly (history, presence, readiness, stats).
pub struct Backends {
    pub store: Arc<dyn MessageStore>,
    pub bindings: Arc<dyn Bindings>,
    /// Live cluster nodes (empty on a single node).
    pub live: LivePeers,
    /// How to ask peers directly (cluster mode only).
    pub ask: Option<PeerAsk>,
}

/// Shared state of one node, handed to every public handler.
pub struct AppState {
    pub node: NodeId,
    pub api_keys: ApiKeys,
    /// Operator keys for `/api/v1/stats`; empty: loopback callers only (see `admin.rs`).
    pub admin_keys: ApiKeys,
    pub ingest: Ingest,
    pub hub: HubHandle,
    pub backends: Backends,
    pub session: Arc<SessionDeps>,
    pub counters: Arc<Counters>,
    /// Set when the node starts draining: `/readyz` fails and new sockets are refused.
    pub draining: AtomicBool,
    /// Session cap (see `Config::max_sessions`).
    pub max_sessions: usize,
    /// Per-client limits of the WebSocket upgrade.
    pub clients: client::ClientLimits,
    pub dashboard: dashboard::Dashboard,
    /// `server.demo`: serve `/demo` and `/client/herald.js`.
    pub demo: bool,
    pub started: Instant,
}

/// The bearer token of a request (`Authorization: Bearer …`), if any.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    bearer_in(req.headers())
}

/// [`bearer`], from the headers alone.
pub fn bearer_in(headers: &header::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Registers every public route. Each one has its operation in [`openapi::ApiDoc`]
/// (`tests/openapi.rs` reads this list and fails on a route the document lacks).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws", web::get().to(ws::upgrade))
        .route("/healthz", web::get().to(ops::healthz))
        .route("/readyz", web::get().to(ops::readyz))
        .route("/api/v1/stats", web::get().to(ops::stats))
        .route("/metrics", web::get().to(ops::metrics))
        .route("/dashboard", web::get().to(dashboard::page))
        .route("/dashboard/data", web::get().to(dashboard::data))
        .route("/demo", web::get().to(demo::page))
        .route("/client/herald.js", web::get().to(demo::client))
        .route("/api/v1/messages", web::post().to(api::post_message))
        .route("/api/v1/messages/batch", web::post().to(api::post_batch))
        .route(
            "/api/v1/messages/{id}/status",
            web::get().to(status::message_status),
        )
        .route(
            "/api/v1/users/{user}/messages",
            web::get().to(users::history),
        )
        .route(
            "/api/v1/users/{user}/presence",
            web::get().to(users::presence),
        )
        .route("/api/openapi.json", web::get().to(openapi::document))
        .default_service(web::to(ops::not_found));
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn bearer_tokens_are_read_case_insensitively_and_trimmed() {
        let req = TestRequest::default()
            .insert_header((header::AUTHORIZATION, "bearer  abc "))
            .to_http_request();
        assert_eq!(bearer(&req), Some("abc"));
        let req = TestRequest::default()
            .insert_header((header::AUTHORIZATION, "Basic abc"))
            .to_http_request();
        assert_eq!(bearer(&req), None);
        assert_eq!(bearer(&TestRequest::default().to_http_request()), None);
    }
}
