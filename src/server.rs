//! Builds and runs one node: backends, actors, the HTTP server, and the drain sequence.
//!
//! [`start`] takes an already-bound listener so tests bind `127.0.0.1:0` and know the
//! address first. It must be called inside an actix `System`.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use tracing::{info, warn};

use crate::actors::cursors::CursorWriter;
use crate::actors::dispatcher::Dispatcher;
use crate::actors::hub::Hub;
use crate::actors::messages::{Drain, FlushCursors, GetHubStats};
use crate::actors::session::SessionDeps;
use crate::actors::stats::Counters;
use crate::auth::{ApiKeys, KeyError, TokenVerifier};
use crate::config::{Config, StoreBackend};
use crate::http::{self, AppState};
use crate::ids::NodeId;
use crate::routes::memory::MemoryRoutes;
use crate::routes::RouteTable;
use crate::store::memory::MemoryStore;
use crate::store::MessageStore;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot listen: {0}")]
    Listen(std::io::Error),
}

/// A running node.
pub struct Node {
    /// The public listener's address.
    pub addr: SocketAddr,
    pub state: web::Data<AppState>,
    handle: ServerHandle,
    /// The spawned server future; it ends once the server has stopped.
    server: Option<actix_rt::task::JoinHandle<std::io::Result<()>>>,
    arbiter: Arbiter,
}

/// A generated node id: `node-` and eight hex digits.
fn generated_node_id() -> NodeId {
    let u = uuid::Uuid::now_v7().as_u128() as u32;
    // unwrap: the format only produces valid id characters
    NodeId::parse(&format!("node-{u:08x}")).unwrap()
}

/// Starts a node on `listener` with `cfg`.
pub async fn start(cfg: Config, listener: TcpListener) -> Result<Node, StartError> {
    let cfg = Arc::new(cfg);
    let node = if cfg.node.id.is_empty() {
        generated_node_id()
    } else {
        // unwrap: validated by Config::validate
        NodeId::parse(&cfg.node.id).unwrap()
    };
    let verifier = Arc::new(TokenVerifier::from_config(&cfg.auth)?);
    let store: Arc<dyn MessageStore> = match cfg.store.backend {
        StoreBackend::Memory => Arc::new(MemoryStore::new(&cfg.store)),
    };
    let routes: Arc<dyn RouteTable> = Arc::new(MemoryRoutes::default());
    let counters = Arc::new(Counters::default());

    // The hub and cursor writer get their own thread so fan-out does not compete with
    // request parsing on the HTTP workers.
    let arbiter = Arbiter::new();
    let hub = {
        let (node, routes, counters) = (node.clone(), routes.clone(), counters.clone());
        Hub::start_in_arbiter(&arbiter.handle(), move |_| Hub::new(node, routes, counters))
    };
    let cursors = {
        let store = store.clone();
        let every = Duration::from_millis(cfg.store.cursor_flush_ms);
        CursorWriter::start_in_arbiter(&arbiter.handle(), move |_| CursorWriter::new(store, every))
    };
    let session = Arc::new(SessionDeps {
        node: node.clone(),
        cfg: cfg.session.clone(),
        hub: hub.clone(),
        cursors: cursors.clone(),
        store: store.clone(),
        verifier,
        counters: counters.clone(),
    });
    let state = web::Data::new(AppState {
        cfg: cfg.clone(),
        node: node.clone(),
        api_keys: ApiKeys::new(&cfg.auth.api_keys),
        store,
        routes,
        dispatcher: Dispatcher::new(hub.clone()),
        hub,
        cursors,
        session,
        counters,
        draining: Default::default(),
        started: Instant::now(),
    });

    let addr = listener.local_addr().map_err(StartError::Listen)?;
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .configure(http::configure)
    })
    .workers(cfg.workers())
    .backlog(cfg.server.backlog)
    .max_connections(cfg.server.max_connections_per_worker)
    .shutdown_timeout(cfg.server.shutdown_timeout_s)
    .disable_signals()
    .listen(listener)
    .map_err(StartError::Listen)?
    .run();
    info!(node = %node, %addr, workers = cfg.workers(), store = state.store.name(), "herald node listening");
    Ok(Node {
        addr,
        handle: server.handle(),
        state,
        // actix-server starts only when its future is polled, so spawn it right away.
        server: Some(actix_rt::spawn(server)),
        arbiter,
    })
}

impl Node {
    /// Drains and stops: readiness goes false, sessions close with 1001, pending acks are
    /// written, in-flight requests finish, then the server stops.
    pub async fn shutdown(&mut self) {
        let state = &self.state;
        state.draining.store(true, Ordering::Relaxed);
        let asked = state.hub.send(Drain).await.unwrap_or(0);
        info!(sessions = asked, "draining");
        let deadline = Instant::now() + Duration::from_secs(state.cfg.server.shutdown_timeout_s);
        while Instant::now() < deadline {
            match state.hub.send(GetHubStats).await {
                Ok(s) if s.sessions > 0 => actix_rt::time::sleep(Duration::from_millis(20)).await,
                _ => break,
            }
        }
        if state.cursors.send(FlushCursors).await.is_err() {
            warn!("cursor writer stopped before the final flush");
        }
        self.handle.stop(true).await;
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.arbiter.stop();
        info!("stopped");
    }

    /// Serves until SIGTERM or SIGINT, then drains and returns.
    pub async fn run_until_signal(mut self) {
        shutdown_signal().await;
        self.shutdown().await;
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(err) => {
            warn!(error = %err, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
    }
}
