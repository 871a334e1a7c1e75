//! Builds and runs one node, as named steps: store, binding table, actors, cluster, HTTP;
//! and the drain sequence that takes it down.
//!
//! [`start`] takes an already-bound listener so tests bind `127.0.0.1:0` and know the
//! address first. It must be called inside an actix `System`.

mod cluster;
mod public;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::dev::ServerHandle;
use actix_web::web;
use tracing::{info, warn};

use self::cluster::ClusterParts;
use crate::actors::ask::PeerAsk;
use crate::actors::cursors::CursorsHandle;
use crate::actors::dispatch::DispatchHandle;
use crate::actors::hub::{DrainPace, DrainPolicy, HubHandle, BINDING_FLUSH};
use crate::actors::positions;
use crate::actors::session::SessionDeps;
use crate::auth::{ApiKeys, Authenticator, KeyError};
use crate::bindings::memory::MemoryBindings;
use crate::bindings::Bindings;
use crate::cluster::LivePeers;
use crate::config::{Config, HubThreads, StoreBackend};
use crate::http::client::ClientLimits;
use crate::http::dashboard::Dashboard;
use crate::http::{AppState, Backends};
use crate::ids::NodeId;
use crate::ingest::commit::Appender;
use crate::ingest::Ingest;
use crate::metrics::Counters;
use crate::store::memory::MemoryStore;
use crate::store::mongo::MongoStore;
use crate::store::{MessageStore, TimedStore};

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
    #[error("the HTTP workers did not start within {0:?}")]
    Workers(Duration),
}

/// How long the HTTP workers may take to start (and, with `server.hub_threads =
/// "workers"`, to take their hub shards).
const WORKERS_START: Duration = Duration::from_secs(30);

/// A running node.
pub struct Node {
    /// The public listener's address.
    pub addr: SocketAddr,
    pub state: web::Data<AppState>,
    cfg: Arc<Config>,
    cursors: CursorsHandle,
    handle: ServerHandle,
    /// The spawned server future; it ends once the server has stopped.
    server: Option<actix_rt::task::JoinHandle<std::io::Result<()>>>,
    arbiter: Arbiter,
    /// The hub shards' own threads (none when they run on the HTTP workers).
    hub_threads: Vec<Arbiter>,
    cluster: Option<ClusterParts>,
}

/// Step 1, the store: the embedded one, or MongoDB (reached before the node starts).
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

/// The node's id from config, or a generated `node-` and eight hex digits.
fn node_id(cfg: &Config) -> NodeId {
    if cfg.node.id.is_empty() {
        let u = uuid::Uuid::now_v7().as_u128() as u32;
        // unwrap: the format only produces valid id characters
        NodeId::parse(&format!("node-{u:08x}")).unwrap()
    } else {
        // unwrap: validated by Config::validate
        NodeId::parse(&cfg.node.id).unwrap()
    }
}

/// The node's actors: the hub shards (with their users' sessions: on threads of their own,
/// or run by the public HTTP workers as they start, one each) and one thread for the cursor
/// writer and the node's loops.
struct Actors {
    arbiter: Arbiter,
    hub_threads: Vec<Arbiter>,
    hub: HubHandle,
    cursors: CursorsHandle,
}

/// Step 3: the hub shards (`server.workers` of them) and the cursor writer.
fn start_actors(
    cfg: &Config,
    node: &NodeId,
    bindings: &Arc<dyn Bindings>,
    store: &Arc<dyn MessageStore>,
    counters: &Arc<Counters>,
) -> Actors {
    let arbiter = Arbiter::new();
    let hub = HubHandle::new(
        cfg.workers(),
        node.clone(),
        bindings.clone(),
        cfg.routes.route_refresh(),
        cfg.session.broadcast_batch(),
        counters.clone(),
    );
    let hub_threads = match cfg.server.hub_threads {
        HubThreads::Own => hub.run_on_own_threads(),
        HubThreads::Workers => Vec::new(),
    };
    let every = Duration::from_millis(cfg.store.cursor_flush_ms);
    let cursors = CursorsHandle::start(&arbiter.handle(), store.clone(), every, counters.clone());
    let check = positions::position_loop(
        hub.clone(),
        store.clone(),
        cfg.session.position_check(),
        counters.clone(),
    );
    arbiter.spawn(check);
    counters.set_history(cfg.metrics.history_s as usize);
    arbiter.spawn(sample_loop(counters.clone()));
    Actors {
        arbiter,
        hub_threads,
        hub,
        cursors,
    }
}

/// Takes the dashboard's reading once a second, for as long as the node runs.
async fn sample_loop(counters: Arc<Counters>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        counters.sample(crate::clock::now_ms());
    }
}

/// [`start`] with the message store given instead of built from `cfg.store` (tests
/// instrument a store to make races happen on purpose). Steps 2 to 5.
pub async fn start_with_store(
    cfg: Config,
    listener: TcpListener,
    store: Arc<dyn MessageStore>,
) -> Result<Node, StartError> {
    let cfg = Arc::new(cfg);
    let node = node_id(&cfg);
    let counters = Arc::new(Counters::default());
    let auth = Arc::new(Authenticator::from_config(&cfg.auth, counters.clone())?);
    auth.start().await;
    counters.set_timing(cfg.metrics.timing);
    let store: Arc<dyn MessageStore> = Arc::new(TimedStore::new(store, counters.clone()));
    let addr = listener.local_addr().map_err(StartError::Listen)?;
    let live = LivePeers::default();
    // Step 2, the binding table.
    let redis = cluster::open_redis(&cfg, &counters)?;
    let bindings: Arc<dyn Bindings> = match &redis {
        Some(r) => r.bindings.clone(),
        None => Arc::new(MemoryBindings::default()),
    };
    let actors = start_actors(&cfg, &node, &bindings, &store, &counters);
    // Step 4, the cluster: forwarding, upkeep, the internal listener.
    let (dispatch, cluster) = match redis {
        None => (
            DispatchHandle::local(actors.hub.clone(), counters.clone()),
            None,
        ),
        Some(redis) => {
            let (dispatch, parts) =
                cluster::start(&cfg, &node, addr, redis, &actors, &live, &counters)?;
            (dispatch, Some(parts))
        }
    };
    let session = Arc::new(SessionDeps {
        node: node.clone(),
        cfg: cfg.session.clone(),
        hub: actors.hub.clone(),
        cursors: actors.cursors.clone(),
        store: store.clone(),
        auth,
        counters: counters.clone(),
    });
    let ask = cluster.as_ref().map(|_| {
        let timeout = Duration::from_millis(cfg.cluster.forward_timeout_ms);
        PeerAsk::new(node.clone(), &cfg.cluster.secret, timeout)
    });
    let ingest = ingest(&cfg, &store, &actors.hub, dispatch, &counters);
    let state = web::Data::new(AppState {
        node: node.clone(),
        api_keys: ApiKeys::new(&cfg.auth.api_keys),
        admin_keys: ApiKeys::new(&cfg.auth.admin_keys),
        ingest,
        hub: actors.hub,
        backends: Backends {
            store,
            bindings,
            live,
            ask,
        },
        session,
        counters,
        draining: Default::default(),
        max_sessions: cfg.max_sessions(),
        clients: ClientLimits::new(&cfg.server, cfg.session.max_per_user),
        dashboard: Dashboard::new(Duration::from_millis(cfg.metrics.peer_timeout_ms)),
        demo: cfg.server.demo,
        started: Instant::now(),
    });
    // Step 5, the public HTTP server (started only when its future is polled, so spawned
    // at once); with the shards on its workers, they run once it has started.
    let server = public::start(&cfg, listener, state.clone())?;
    let handle = server.handle();
    let server = actix_rt::spawn(server);
    if !shards_taken(&state.hub).await {
        handle.stop(false).await;
        return Err(StartError::Workers(WORKERS_START));
    }
    let b = &state.backends;
    info!(node = %node, %addr, workers = cfg.workers(), store = b.store.name(), routes = b.bindings.name(), "herald node listening");
    Ok(Node {
        addr,
        handle,
        state,
        cfg,
        cursors: actors.cursors,
        server: Some(server),
        arbiter: actors.arbiter,
        hub_threads: actors.hub_threads,
        cluster,
    })
}

/// Waits until every hub shard runs on a thread (at once when they have threads of their
/// own); false if the HTTP workers did not take theirs within [`WORKERS_START`].
async fn shards_taken(hub: &HubHandle) -> bool {
    let started = Instant::now();
    while hub.waiting_shards() > 0 {
        if started.elapsed() > WORKERS_START {
            return false;
        }
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
    true
}

/// The ingestion service; with MongoDB, appends go through group commit (on the system's
/// own arbiter), the embedded store needs none.
fn ingest(
    cfg: &Config,
    store: &Arc<dyn MessageStore>,
    hub: &HubHandle,
    dispatch: DispatchHandle,
    counters: &Arc<Counters>,
) -> Ingest {
    let appender = match cfg.store.backend {
        StoreBackend::Memory => Appender::Direct(store.clone()),
        StoreBackend::Mongo => Appender::batched(store.clone(), counters.clone()),
    };
    Ingest::new(
        cfg.ingest.clone(),
        appender,
        hub.clone(),
        dispatch,
        counters.clone(),
    )
}

impl Node {
    /// Drains and stops: readiness goes false and new sockets are refused; after
    /// `drain_delay_ms` sessions are told to reconnect (1012), spread over time; pending
    /// acks are written; in-flight requests finish and their forwards are sent; then the
    /// node leaves the registry and the server stops.
    pub async fn shutdown(&mut self) {
        let state = &self.state;
        state.draining.store(true, Ordering::Relaxed);
        let server = &self.cfg.server;
        if server.drain_delay_ms > 0 {
            info!(
                delay_ms = server.drain_delay_ms,
                "readiness off; waiting before closing sessions"
            );
            actix_rt::time::sleep(Duration::from_millis(server.drain_delay_ms)).await;
        }
        let policy = drain_policy(server);
        let asked = state.hub.drain(policy).await;
        let spread = DrainPace::new(asked, &policy).window();
        info!(
            sessions = asked,
            spread_ms = spread.as_millis() as u64,
            "draining: telling sessions to reconnect"
        );
        let timeout = Duration::from_secs(server.shutdown_timeout_s);
        let deadline = Instant::now() + spread + timeout;
        while Instant::now() < deadline {
            match state.hub.stats().await {
                Ok(s) if s.sessions > 0 => actix_rt::time::sleep(Duration::from_millis(20)).await,
                _ => break,
            }
        }
        if !self.cursors.flush().await {
            warn!("cursor writer stopped before the final flush");
        }
        if self.cluster.is_some() {
            // Give the hub one binding flush to unbind the users whose sessions just closed
            // (shards on the HTTP workers stop with them).
            actix_rt::time::sleep(BINDING_FLUSH * 2).await;
        }
        self.handle.stop(true).await;
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        if let Some(c) = self.cluster.take() {
            c.settle(timeout).await;
            c.leave(&state.node).await;
        }
        self.arbiter.stop();
        for a in &self.hub_threads {
            a.stop();
        }
        info!("stopped");
    }

    /// Serves until SIGTERM or SIGINT, then drains and returns.
    pub async fn run_until_signal(mut self) {
        shutdown_signal().await;
        self.shutdown().await;
    }
}

/// How a drain spreads its closes, from `[server]`.
pub fn drain_policy(server: &crate::config::ServerConfig) -> DrainPolicy {
    DrainPolicy {
        close_rate: server.drain_close_rate,
        max_spread: Duration::from_millis(server.drain_spread_ms),
        jitter_ms: server.drain_reconnect_jitter_ms,
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
