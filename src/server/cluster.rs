//! The cluster steps of starting a node (when `routes.backend = "redis"`): open Redis, then
//! start forwarding (dispatch workers and peer actors), the keeper loops and the internal
//! listener; and the matching clean leave on drain.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix::prelude::*;
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use tracing::{info, warn};

use super::{Actors, StartError};
use crate::actors::dispatch::{ClusterLink, DispatchHandle};
use crate::actors::hub::HubHandle;
use crate::actors::keeper::Keeper;
use crate::actors::peer::{PeerDeps, PeerSet};
use crate::bindings::redis::RedisBindings;
use crate::bindings::Bindings;
use crate::clock::now_ms;
use crate::cluster::membership::Membership;
use crate::cluster::{LivePeers, NodeInfo};
use crate::config::{Config, RoutesBackend, StoreBackend};
use crate::http::internal::{self, InternalState};
use crate::ids::NodeId;
use crate::metrics::Counters;
use crate::redis::{Keys, RedisConn};

/// Redis, opened (connections are made lazily on first use).
pub(super) struct Redis {
    conn: Arc<RedisConn>,
    keys: Keys,
    pub(super) bindings: Arc<RedisBindings>,
}

/// Step 2 in cluster mode: the Redis connection and binding table; `None` on a single node.
pub(super) fn open_redis(
    cfg: &Config,
    counters: &Arc<Counters>,
) -> Result<Option<Redis>, StartError> {
    if cfg.routes.backend == RoutesBackend::Memory {
        return Ok(None);
    }
    if cfg.store.backend == StoreBackend::Memory {
        warn!(
            "cluster mode with the memory store: each node keeps its own messages and seqs, so \
             a user's messages must all be posted through one node and survive only on it; \
             set store.backend = \"mongo\" for the cluster-wide delivery promise"
        );
    }
    let conn = Arc::new(
        RedisConn::new(&cfg.routes)
            .map_err(StartError::Redis)?
            .timed(counters.clone()),
    );
    let keys = Keys::new(&cfg.routes.key_prefix);
    let bindings = Arc::new(RedisBindings::new(
        conn.clone(),
        keys.clone(),
        cfg.routes.route_ttl_ms,
    ));
    Ok(Some(Redis {
        conn,
        keys,
        bindings,
    }))
}

/// The cluster half of a running node.
pub(super) struct ClusterParts {
    membership: Arc<Membership>,
    /// To wait for in-flight forwards on drain.
    dispatch: DispatchHandle,
    internal: ServerHandle,
    internal_task: actix_rt::task::JoinHandle<std::io::Result<()>>,
    dispatch_arbiter: Arbiter,
}

impl ClusterParts {
    /// Waits, at most `limit`, for every forward dispatched so far to be sent to its node.
    pub(super) async fn settle(&self, limit: std::time::Duration) {
        if tokio::time::timeout(limit, self.dispatch.settle())
            .await
            .is_err()
        {
            warn!("forwards still in flight when the drain's time ran out");
        }
    }

    /// Leaves the registry, stops the internal listener and the forwarding actors.
    pub(super) async fn leave(self, node: &NodeId) {
        if let Err(e) = self.membership.leave(node).await {
            warn!(error = %e, "could not remove this node from the registry");
        }
        self.internal.stop(true).await;
        let _ = self.internal_task.await;
        self.dispatch_arbiter.stop();
    }
}

/// The internal listener's server (one worker; the node's own signals stop it).
fn internal_server(
    cfg: &Arc<Config>,
    listener: TcpListener,
    node: &NodeId,
    hub: &HubHandle,
    counters: &Arc<Counters>,
) -> Result<actix_web::dev::Server, StartError> {
    let state = web::Data::new(Arc::new(InternalState::new(
        cfg,
        node.clone(),
        hub.clone(),
        counters.clone(),
    )));
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(internal::configure)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(cfg.server.shutdown_timeout_s)
    .listen(listener)
    .map_err(StartError::Listen)?
    .run())
}

/// Step 4: binds the internal listener and starts everything that talks to other nodes.
pub(super) fn start(
    cfg: &Arc<Config>,
    node: &NodeId,
    public: SocketAddr,
    redis: Redis,
    actors: &Actors,
    live: &LivePeers,
    counters: &Arc<Counters>,
) -> Result<(DispatchHandle, ClusterParts), StartError> {
    let listener = TcpListener::bind(cfg.cluster.internal_listen).map_err(StartError::Listen)?;
    let internal_addr = listener.local_addr().map_err(StartError::Listen)?;
    let advertise = if cfg.cluster.internal_advertise.is_empty() {
        internal_addr.to_string()
    } else {
        cfg.cluster.internal_advertise.clone()
    };
    let me = NodeInfo {
        id: node.clone(),
        internal: advertise,
        public: public.to_string(),
        started_ms: now_ms(),
    };
    let bindings: Arc<dyn Bindings> = redis.bindings.clone();
    let dispatch_arbiter = Arbiter::new();
    let peer_deps = PeerDeps {
        me: node.clone(),
        secret: cfg.cluster.secret.as_bytes().to_vec(),
        cfg: cfg.cluster.clone(),
        bindings: bindings.clone(),
        counters: counters.clone(),
    };
    let membership = Arc::new(Membership::new(redis.conn.clone(), redis.keys.clone()));
    let link = ClusterLink {
        me: node.clone(),
        membership: membership.clone(),
        bindings,
        live: live.clone(),
        peers: PeerSet::new(peer_deps, dispatch_arbiter.handle()),
        counters: counters.clone(),
    };
    let dispatch = DispatchHandle::clustered(
        actors.hub.clone(),
        link,
        cfg.cluster.dispatchers,
        &dispatch_arbiter.handle(),
    );
    let keeper = Arc::new(Keeper {
        conn: redis.conn,
        keys: redis.keys,
        membership: membership.clone(),
        bindings: redis.bindings,
        me,
        cfg: cfg.routes.clone(),
        hub: actors.hub.clone(),
        live: live.clone(),
        counters: counters.clone(),
    });
    actors.arbiter.spawn_fn(move || keeper.spawn());
    let server = internal_server(cfg, listener, node, &actors.hub, counters)?;
    info!(node = %node, internal = %internal_addr, "internal listener up");
    let parts = ClusterParts {
        membership,
        dispatch: dispatch.clone(),
        internal: server.handle(),
        internal_task: actix_rt::spawn(server),
        dispatch_arbiter,
    };
    Ok((dispatch, parts))
}
