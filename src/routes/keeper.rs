//! Background upkeep of the Redis route table: this node's liveness key and the live-peer
//! view, the deadline sweep, and the expired-key event subscription.
//!
//! Expiry events are a hint, not a clock: they arrive late (seconds, with many volatile
//! keys), out of order, and not at all while the subscriber is disconnected. The sweep of
//! `<p>:deadlines` every `routes.sweep_ms` is what makes cleanup deterministic; the events
//! only make it faster. A change of Redis `run_id` (a restart, possibly empty) or a
//! recovery from an outage makes the hub re-bind every local user at once.

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use futures_util::StreamExt;
use redis_async::resp::FromResp;
use redis_async::resp_array;
use tracing::{debug, info, warn};

use super::redis::RedisRoutes;
use crate::actors::hub::Hub;
use crate::actors::messages::{Rebind, RebindAll};
use crate::cluster::{LivePeers, NodeInfo};
use crate::config::RoutesConfig;
use crate::ids::{NodeId, UserId};

/// Most overdue bindings handled per sweep.
const SWEEP_BATCH: usize = 2000;
/// First and longest wait between pub/sub reconnection attempts.
const RESUBSCRIBE_MIN: Duration = Duration::from_millis(250);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(5);

/// Everything the upkeep loops share.
pub struct Keeper {
    pub routes: Arc<RedisRoutes>,
    pub me: NodeInfo,
    pub cfg: RoutesConfig,
    pub hub: Addr<Hub>,
    pub live: LivePeers,
}

impl Keeper {
    /// Starts the three loops on the current arbiter; they end with it.
    pub fn spawn(self: Arc<Self>) {
        actix_rt::spawn(self.clone().heartbeat_loop());
        actix_rt::spawn(self.clone().sweep_loop());
        actix_rt::spawn(self.expiry_loop());
    }

    async fn run_id(&self) -> Option<String> {
        let info: String = self
            .routes
            .conn
            .cmd(resp_array!["INFO", "server"])
            .await
            .ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .map(|s| s.trim().to_string())
    }

    async fn heartbeat_loop(self: Arc<Self>) {
        let mut healthy: Option<bool> = None;
        let mut run_id: Option<String> = None;
        loop {
            match self.routes.heartbeat(&self.me, self.cfg.node_ttl_ms).await {
                Ok(live) => {
                    let current = self.run_id().await;
                    let restarted = current.is_some() && run_id.is_some() && current != run_id;
                    if healthy == Some(false) || restarted {
                        info!(
                            restarted,
                            "redis reachable again; re-binding every local user"
                        );
                        self.hub.do_send(RebindAll);
                    }
                    if healthy != Some(true) || restarted {
                        if let Err(e) = self.routes.ensure_expiry_events().await {
                            warn!(error = %e, "could not check keyspace event config");
                        }
                    }
                    if current.is_some() {
                        run_id = current;
                    }
                    healthy = Some(true);
                    for gone in self.live.replace(live) {
                        warn!(node = %gone, "peer node is gone (liveness key missing)");
                    }
                }
                Err(e) => {
                    if healthy != Some(false) {
                        warn!(error = %e, "redis unreachable: cross-node routing degraded, local delivery continues");
                    }
                    healthy = Some(false);
                }
            }
            tokio::time::sleep(self.cfg.node_refresh()).await;
        }
    }

    async fn sweep_loop(self: Arc<Self>) {
        let every = Duration::from_millis(self.cfg.sweep_ms);
        loop {
            tokio::time::sleep(every).await;
            let overdue = match self.routes.overdue(SWEEP_BATCH).await {
                Ok(o) => o,
                Err(e) => {
                    debug!(error = %e, "sweep skipped");
                    continue;
                }
            };
            let mut mine = Vec::new();
            let mut dead = Vec::new();
            for (node, user) in overdue {
                if node == self.me.id.as_str() {
                    if let Ok(u) = UserId::parse(&user) {
                        mine.push(u);
                    }
                } else if NodeId::parse(&node).map_or(true, |n| !self.live.is_live(&n)) {
                    dead.push((node, user));
                }
            }
            if !mine.is_empty() {
                debug!(
                    users = mine.len(),
                    "own bindings overdue; re-binding live ones"
                );
                self.hub.do_send(Rebind {
                    users: mine,
                    unbind_absent: true,
                });
            }
            if !dead.is_empty() {
                debug!(bindings = dead.len(), "removing bindings of dead nodes");
                if let Err(e) = self.routes.remove_bindings(&dead).await {
                    debug!(error = %e, "could not remove dead bindings");
                }
            }
        }
    }

    async fn expiry_loop(self: Arc<Self>) {
        let channel = "__keyevent@0__:expired";
        let route_prefix = self.routes.keys.route_prefix();
        let node_prefix = self.routes.keys.node_prefix();
        let mut backoff = RESUBSCRIBE_MIN;
        loop {
            let subscribed = async {
                let b = self.routes.conn.builder().ok()?;
                let t = self.routes.conn.timeout();
                let conn = tokio::time::timeout(t, b.pubsub_connect())
                    .await
                    .ok()?
                    .ok()?;
                let stream = tokio::time::timeout(t, conn.subscribe(channel))
                    .await
                    .ok()?
                    .ok()?;
                Some((conn, stream))
            }
            .await;
            let Some((_conn, mut stream)) = subscribed else {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RESUBSCRIBE_MAX);
                continue;
            };
            info!(channel, "subscribed to redis expiry events");
            backoff = RESUBSCRIBE_MIN;
            while let Some(item) = stream.next().await {
                let key = match item.map(String::from_resp) {
                    Ok(Ok(k)) => k,
                    Ok(Err(_)) => continue,
                    Err(e) => {
                        warn!(error = %e, "expiry subscription lost; resubscribing");
                        break;
                    }
                };
                if let Some(user) = key.strip_prefix(&route_prefix) {
                    if let Ok(u) = UserId::parse(user) {
                        debug!(user = %u, "route binding expired");
                        self.hub.do_send(Rebind {
                            users: vec![u],
                            unbind_absent: false,
                        });
                    }
                } else if let Some(node) = key.strip_prefix(&node_prefix) {
                    if let Ok(n) = NodeId::parse(node) {
                        if n != self.me.id && self.live.remove(&n) {
                            warn!(node = %n, "peer node liveness expired");
                        }
                    }
                }
            }
            tokio::time::sleep(RESUBSCRIBE_MIN).await;
        }
    }
}
