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
use crate::actors::dispatcher::{ClusterLink, Dispatcher};
use crate::actors::hub::Hub;
use crate::actors::messages::{Drain, FlushCursors, GetHubStats};
use crate::actors::session::SessionDeps;
use crate::actors::stats::Counters;
use crate::auth::{ApiKeys, KeyError, TokenVerifier};
use crate::cluster::internal::InternalState;
use crate::cluster::peer::{PeerDeps, PeerSet};
use crate::cluster::sign::Verifier;
use crate::cluster::{LivePeers, NodeInfo};
use crate::config::{Config, RoutesBackend, StoreBackend};
use crate::http::{self, AppState};
use crate::ids::NodeId;
use crate::routes::keeper::Keeper;
use crate::routes::memory::MemoryRoutes;
use crate::routes::redis::RedisRoutes;
use crate::routes::RouteTable;
use crate::store::batcher::Appender;
use crate::store::memory::MemoryStore;
use crate::store::mongo::MongoStore;
use crate::clock::now_ms;
use crate::store::MessageStore;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot listen: {0}")]
    Listen(std::io::Error),
    #[error("invalid config key `routes.redis_url`: {0}")]
    Redis(String),
    #[error("message store unavailable at startup: {0}")]
    Store(String),
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
    cluster: Option<ClusterParts>,
}

/// A generated node id: `node-` and eight hex digits.
fn generated_node_id() -> NodeId {
    let u = uuid::Uuid::now_v7().as_u128() as u32;
    // unwrap: the format only produces valid id characters
    NodeId::parse(&format!("node-{u:08x}")).unwrap()
}

/// The cluster half of a node: present when the route table is Redis.
struct ClusterParts {
    redis: Arc<RedisRoutes>,
    internal: ServerHandle,
    internal_task: actix_rt::task::JoinHandle<std::io::Result<()>>,
    dispatch_arbiter: Arbiter,
}

/// Starts a node on `listener` with `cfg`. In cluster mode the internal listener is bound
/// from `cluster.internal_listen` (port 0 picks a free one; its real address is advertised).
pub async fn start(cfg: Config, listener: TcpListener) -> Result<Node, StartError> {
    let store: Arc<dyn MessageStore> = match cfg.store.backend {
        StoreBackend::Memory => Arc::new(MemoryStore::new(&cfg.store)),
        StoreBackend::Mongo => Arc::new(
            MongoStore::connect(&cfg.store.mongo_config())
                .await
                .map_err(|e| StartError::Store(e.to_string()))?,
        ),
    };
    start_with_store(cfg, listener, store).await
}

/// [`start`] with the message store given instead of built from `cfg.store` (tests
/// instrument a store to make races happen on purpose).
pub async fn start_with_store(
    cfg: Config,
    listener: TcpListener,
    store: Arc<dyn MessageStore>,
) -> Result<Node, StartError> {
    let cfg = Arc::new(cfg);
    let node = if cfg.node.id.is_empty() {
        generated_node_id()
    } else {
        // unwrap: validated by Config::validate
        NodeId::parse(&cfg.node.id).unwrap()
    };
    let verifier = Arc::new(TokenVerifier::from_config(&cfg.auth)?);
    let counters = Arc::new(Counters::default());
    let addr = listener.local_addr().map_err(StartError::Listen)?;
    let live = LivePeers::default();
    let redis = match cfg.routes.backend {
        RoutesBackend::Memory => None,
        RoutesBackend::Redis => Some(Arc::new(
            RedisRoutes::new(&cfg.routes, live.clone()).map_err(StartError::Redis)?,
        )),
    };
    if redis.is_some() && cfg.store.backend == StoreBackend::Memory {
        warn!(
            "cluster mode with the memory store: each node keeps its own messages and seqs, so \
             a user's messages must all be posted through one node and survive only on it; \
             set store.backend = \"mongo\" for the cluster-wide delivery promise"
        );
    }
    let routes: Arc<dyn RouteTable> = match &redis {
        Some(r) => r.clone(),
        None => Arc::new(MemoryRoutes::default()),
    };

    // The hub and cursor writer get their own thread so fan-out does not compete with
    // request parsing on the HTTP workers.
    let arbiter = Arbiter::new();
    let hub = {
        let (node, routes, counters) = (node.clone(), routes.clone(), counters.clone());
        let refresh = cfg.routes.route_refresh();
        Hub::start_in_arbiter(&arbiter.handle(), move |_| {
            Hub::new(node, routes, refresh, counters)
        })
    };
    let cursors = {
        let store = store.clone();
        let every = Duration::from_millis(cfg.store.cursor_flush_ms);
        CursorWriter::start_in_arbiter(&arbiter.handle(), move |_| CursorWriter::new(store, every))
    };

    let (dispatcher, cluster) = match &redis {
        None => (Dispatcher::local(hub.clone(), counters.clone()), None),
        Some(redis) => {
            let internal_listener =
                TcpListener::bind(cfg.cluster.internal_listen).map_err(StartError::Listen)?;
            let internal_addr = internal_listener.local_addr().map_err(StartError::Listen)?;
            let advertise = if cfg.cluster.internal_advertise.is_empty() {
                internal_addr.to_string()
            } else {
                cfg.cluster.internal_advertise.clone()
            };
            let me = NodeInfo {
                id: node.clone(),
                internal: advertise,
                public: addr.to_string(),
                started_ms: now_ms(),
            };
            let dispatch_arbiter = Arbiter::new();
            let peers = PeerSet::new(
                PeerDeps {
                    me: node.clone(),
                    secret: cfg.cluster.secret.as_bytes().to_vec(),
                    cfg: cfg.cluster.clone(),
                    routes: routes.clone(),
                    counters: counters.clone(),
                },
                dispatch_arbiter.handle(),
            );
            let link = ClusterLink {
                me: node.clone(),
                routes: routes.clone(),
                live: live.clone(),
                peers,
                counters: counters.clone(),
            };
            let dispatcher = Dispatcher::clustered(
                hub.clone(),
                link,
                cfg.cluster.dispatchers,
                &dispatch_arbiter.handle(),
            );
            let keeper = Arc::new(Keeper {
                routes: redis.clone(),
                me,
                cfg: cfg.routes.clone(),
                hub: hub.clone(),
                live: live.clone(),
            });
            arbiter.spawn_fn(move || keeper.spawn());
            let internal_state = web::Data::new(Arc::new(InternalState {
                verifier: Verifier::new(&cfg.cluster.secret, cfg.cluster.replay_window_ms),
                hub: hub.clone(),
                counters: counters.clone(),
            }));
            let internal = HttpServer::new(move || {
                App::new()
                    .app_data(internal_state.clone())
                    .configure(crate::cluster::internal::configure)
            })
            .workers(1)
            .disable_signals()
            .shutdown_timeout(cfg.server.shutdown_timeout_s)
            .listen(internal_listener)
            .map_err(StartError::Listen)?
            .run();
            info!(node = %node, internal = %internal_addr, "internal listener up");
            let parts = ClusterParts {
                redis: redis.clone(),
                internal: internal.handle(),
                internal_task: actix_rt::spawn(internal),
                dispatch_arbiter,
            };
            (dispatcher, Some(parts))
        }
    };

    // Group commit runs on the system's own arbiter; the embedded store needs none.
    let appender = match cfg.store.backend {
        StoreBackend::Memory => Appender::Direct(store.clone()),
        StoreBackend::Mongo => Appender::batched(store.clone()),
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
        appender,
        store,
        routes,
        live,
        dispatcher,
        hub,
        cursors,
        session,
        counters,
        draining: Default::default(),
        max_sessions: cfg.max_sessions(),
        started: Instant::now(),
    });

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
    info!(node = %node, %addr, workers = cfg.workers(), store = state.store.name(), routes = state.routes.name(), "herald node listening");
    Ok(Node {
        addr,
        handle: server.handle(),
        state,
        // actix-server starts only when its future is polled, so spawn it right away.
        server: Some(actix_rt::spawn(server)),
        arbiter,
        cluster,
    })
}

impl Node {
    /// Drains and stops: readiness goes false, sessions close with 1001, pending acks are
    /// written, in-flight requests finish, then the server stops.
    pub async fn shutdown(&mut self) {
        let state = &self.state;
        state.draining.store(true, Ordering::Relaxed);
        let delay = Duration::from_millis(state.cfg.server.drain_delay_ms);
        if !delay.is_zero() {
            info!(
                delay_ms = state.cfg.server.drain_delay_ms,
                "readiness off; waiting before closing sessions"
            );
            actix_rt::time::sleep(delay).await;
        }
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
        if let Some(c) = self.cluster.take() {
            // Give the hub one route flush to unbind the users whose sessions just closed.
            actix_rt::time::sleep(crate::actors::hub::ROUTE_FLUSH * 2).await;
            if let Err(e) = c.redis.leave(&state.node).await {
                warn!(error = %e, "could not remove this node from the registry");
            }
            c.internal.stop(true).await;
            let _ = c.internal_task.await;
            c.dispatch_arbiter.stop();
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
