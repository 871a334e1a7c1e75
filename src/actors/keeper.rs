//! Background upkeep of cluster state in Redis: this node's liveness and the live-peer view
//! (`cluster::membership`), the binding deadline sweep and the expired-key subscription
//! (`bindings::redis`). Plain tasks on the hub's arbiter that talk to the hub through its
//! handle.
//!
//! Expiry events are a hint, not a clock: they arrive late (seconds, with many volatile
//! keys), out of order, and not at all while the subscriber is disconnected. The sweep of
//! `<p>:deadlines` every `routes.sweep_ms` is what makes cleanup deterministic; the events
//! only make it faster. A change of Redis `run_id` (a restart, possibly empty) or a
//! recovery from an outage makes the hub re-bind every local user at once.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis_async::resp::FromResp;
use tracing::{debug, info, warn};

use super::hub::HubHandle;
use crate::bindings::redis::RedisBindings;
use crate::cluster::membership::Membership;
use crate::cluster::{LivePeers, NodeInfo};
use crate::config::RoutesConfig;
use crate::ids::{NodeId, UserId};
use crate::metrics::{ActorKind, Counters};
use crate::redis::{Keys, RedisConn, EXPIRED_CHANNEL};

/// Most overdue bindings handled per sweep.
const SWEEP_BATCH: usize = 2000;
/// First and longest wait between pub/sub reconnection attempts.
const RESUBSCRIBE_MIN: Duration = Duration::from_millis(250);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(5);

/// Everything the upkeep loops share.
pub struct Keeper {
    pub conn: Arc<RedisConn>,
    pub keys: Keys,
    pub membership: Arc<Membership>,
    pub bindings: Arc<RedisBindings>,
    pub me: NodeInfo,
    pub cfg: RoutesConfig,
    pub hub: HubHandle,
    pub live: LivePeers,
    pub counters: Arc<Counters>,
}

/// What one sweep found overdue: this node's users (to re-bind or unbind) and bindings of
/// nodes that are not live (to remove).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Overdue {
    pub mine: Vec<UserId>,
    pub dead: Vec<(String, String)>,
}

/// Sorts overdue (node, user) bindings; bindings of other live nodes are theirs to renew.
pub fn sort_overdue(me: &NodeId, live: &LivePeers, overdue: Vec<(String, String)>) -> Overdue {
    let mut out = Overdue::default();
    for (node, user) in overdue {
        if node == me.as_str() {
            if let Ok(u) = UserId::parse(&user) {
                out.mine.push(u);
            }
        } else if NodeId::parse(&node).map_or(true, |n| !live.is_live(&n)) {
            out.dead.push((node, user));
        }
    }
    out
}

impl Keeper {
    /// Starts the three loops on the current arbiter; they end with it.
    pub fn spawn(self: Arc<Self>) {
        self.counters.actor(ActorKind::Keeper).started();
        actix_rt::spawn(self.clone().liveness_loop());
        actix_rt::spawn(self.clone().sweep_loop());
        actix_rt::spawn(self.expiry_loop());
    }

    async fn liveness_loop(self: Arc<Self>) {
        let mut healthy: Option<bool> = None;
        let mut run_id: Option<String> = None;
        loop {
            let timed = self.counters.handling(ActorKind::Keeper);
            match self
                .membership
                .publish(&self.me, self.cfg.node_ttl_ms)
                .await
            {
                Ok(live) => {
                    let current = self.conn.run_id().await;
                    let restarted = current.is_some() && run_id.is_some() && current != run_id;
                    if healthy == Some(false) || restarted {
                        info!(
                            restarted,
                            "redis reachable again; re-binding every local user"
                        );
                        self.hub.rebind_all();
                    }
                    if healthy != Some(true) || restarted {
                        self.conn.ensure_expiry_events().await;
                    }
                    if current.is_some() {
                        run_id = current;
                    }
                    healthy = Some(true);
                    for gone in self.live.replace(live) {
                        self.counters.peers.forget(gone.as_str());
                        warn!(node = %gone, "peer node is gone (liveness key missing)");
                    }
                }
                Err(e) => {
                    self.counters.actor(ActorKind::Keeper).error();
                    if healthy != Some(false) {
                        warn!(error = %e, "redis unreachable: cross-node routing degraded, local delivery continues");
                    }
                    healthy = Some(false);
                }
            }
            drop(timed);
            tokio::time::sleep(self.cfg.node_refresh()).await;
        }
    }

    async fn sweep_loop(self: Arc<Self>) {
        let every = Duration::from_millis(self.cfg.sweep_ms);
        loop {
            tokio::time::sleep(every).await;
            let _timed = self.counters.handling(ActorKind::Keeper);
            let overdue = match self.bindings.overdue(SWEEP_BATCH).await {
                Ok(o) => o,
                Err(e) => {
                    self.counters.actor(ActorKind::Keeper).error();
                    debug!(error = %e, "sweep skipped");
                    continue;
                }
            };
            let Overdue { mine, dead } = sort_overdue(&self.me.id, &self.live, overdue);
            if !mine.is_empty() {
                debug!(
                    users = mine.len(),
                    "own bindings overdue; re-binding live ones"
                );
                self.hub.rebind(mine, true);
            }
            if !dead.is_empty() {
                debug!(bindings = dead.len(), "removing bindings of dead nodes");
                if let Err(e) = self.bindings.remove(&dead).await {
                    debug!(error = %e, "could not remove dead bindings");
                }
            }
        }
    }

    async fn expiry_loop(self: Arc<Self>) {
        let mut backoff = RESUBSCRIBE_MIN;
        loop {
            let (_conn, mut stream) = match self.conn.subscribe(EXPIRED_CHANNEL).await {
                Ok(s) => s,
                Err(e) => {
                    debug!(error = %e, "expiry subscription failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RESUBSCRIBE_MAX);
                    continue;
                }
            };
            info!(
                channel = EXPIRED_CHANNEL,
                "subscribed to redis expiry events"
            );
            backoff = RESUBSCRIBE_MIN;
            while let Some(item) = stream.next().await {
                match item.map(String::from_resp) {
                    Ok(Ok(key)) => {
                        let _timed = self.counters.handling(ActorKind::Keeper);
                        self.on_expired(&key);
                    }
                    Ok(Err(_)) => {}
                    Err(e) => {
                        warn!(error = %e, "expiry subscription lost; resubscribing");
                        break;
                    }
                }
            }
            tokio::time::sleep(RESUBSCRIBE_MIN).await;
        }
    }

    /// A key expired: a binding (re-bind if still held here) or a node's liveness (drop it).
    fn on_expired(&self, key: &str) {
        if let Some(user) = key.strip_prefix(&self.keys.route_prefix()) {
            if let Ok(u) = UserId::parse(user) {
                debug!(user = %u, "binding expired");
                self.hub.rebind(vec![u], false);
            }
        } else if let Some(node) = key.strip_prefix(&self.keys.node_prefix()) {
            if let Ok(n) = NodeId::parse(node) {
                if n != self.me.id && self.live.remove(&n) {
                    self.counters.peers.forget(n.as_str());
                    warn!(node = %n, "peer node liveness expired");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn a_sweep_renews_own_bindings_and_removes_only_dead_nodes_ones() {
        let me = NodeId::parse("me").unwrap();
        let live = LivePeers::default();
        let peer = NodeInfo {
            id: NodeId::parse("alive").unwrap(),
            internal: String::new(),
            public: String::new(),
            started_ms: 0,
        };
        live.replace(HashMap::from([(peer.id.clone(), peer)]));
        let pair = |n: &str, u: &str| (n.to_string(), u.to_string());
        let sorted = sort_overdue(
            &me,
            &live,
            vec![
                pair("me", "u1"),
                pair("alive", "u2"),
                pair("dead", "u3"),
                pair("bad node!", "u4"),
                pair("me", "bad user!"),
            ],
        );
        assert_eq!(sorted.mine, vec![UserId::parse("u1").unwrap()]);
        assert_eq!(
            sorted.dead,
            vec![pair("dead", "u3"), pair("bad node!", "u4")]
        );
    }
}
