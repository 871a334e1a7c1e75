//! The public listener: actix-web serves every route, and actix-http's upgrade hook hands
//! WebSocket upgrades (with their sockets) to [`http::upgrade`], so a session owns its
//! socket instead of streaming a response through the HTTP/1 dispatcher.
//!
//! This is what `HttpServer::listen` builds, with the upgrade hook added and the listen
//! backlog applied to a listener bound elsewhere (`std`'s bind listens with 128, which
//! overflows under a burst of handshakes and makes clients retry their SYN a second later).

use std::net::TcpListener;
use std::time::Duration;

use actix_http::HttpService;
use actix_server::Server;
use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::dev::AppConfig;
use actix_web::{web, App};

use super::StartError;
use crate::config::{Config, HubThreads};
use crate::http::{self, AppState};

/// How long a client has to send its request head (actix-web's default).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an idle keep-alive connection is kept (actix-web's default).
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// How long a closing connection may take to shut down (actix-web's default).
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Starts serving `listener` with every public route and the WebSocket upgrade.
pub fn start(
    cfg: &Config,
    listener: TcpListener,
    state: web::Data<AppState>,
) -> Result<Server, StartError> {
    // Listening again on a listening socket sets its backlog (Linux, BSD).
    socket2::SockRef::from(&listener)
        .listen(i32::try_from(cfg.server.backlog).unwrap_or(i32::MAX))
        .map_err(StartError::Listen)?;
    let addr = listener.local_addr().map_err(StartError::Listen)?;
    let on_workers = cfg.server.hub_threads == HubThreads::Workers;
    let builder = Server::build();
    let shutdown = builder.graceful_shutdown_signal();
    let builder = builder
        .workers(cfg.workers())
        .backlog(cfg.server.backlog)
        .max_concurrent_connections(cfg.server.max_connections_per_worker)
        .shutdown_timeout(cfg.server.shutdown_timeout_s)
        .disable_signals()
        .listen("herald-public", listener, move || {
            // With `hub_threads = "workers"` each worker runs one hub shard on its thread
            // (actors/hub/shard.rs); actix-server accepts once every worker has started.
            if on_workers && !state.hub.take_shard_here() {
                // Only a worker started again after its thread died finds none left; /readyz
                // reports the stopped shard.
                tracing::error!(
                    "an HTTP worker restarted: its hub shard stopped with the old thread, \
                     and that shard's users get nothing live until the node restarts"
                );
            }
            let app_state = state.clone();
            let app = App::new()
                .app_data(app_state)
                .configure(http::configure)
                .into_factory()
                .map_err(|err| err.error_response());
            let ws_state = state.clone();
            let upgrade = fn_service(move |(req, framed)| {
                http::upgrade::service(req, framed, ws_state.clone())
            });
            let shutdown = shutdown.clone();
            HttpService::build()
                .graceful_shutdown_signal(move || {
                    let signal = shutdown.clone();
                    async move { signal.notified().await }
                })
                .keep_alive(KEEP_ALIVE)
                .client_request_timeout(REQUEST_TIMEOUT)
                .client_disconnect_timeout(DISCONNECT_TIMEOUT)
                .local_addr(addr)
                .upgrade(upgrade)
                .finish(map_config(app, |()| AppConfig::default()))
                .tcp()
        })
        .map_err(StartError::Listen)?;
    Ok(builder.run())
}
