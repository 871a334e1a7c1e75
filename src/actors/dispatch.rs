//! Routes stored messages to the sessions that should get them, through [`DispatchHandle`].
//!
//! Every delivery is offered to the local hub first (it drops users with no local
//! session). In cluster mode a pool of `DispatchWorker` actors also looks the recipients
//! up in the binding table and forwards to the live nodes holding them. A user's messages
//! always go through the same worker (the hub's shard hash of the user id), and a worker
//! has one lookup in flight at a time, batching whatever arrived meanwhile into the next
//! pipelined lookup, so per-user order holds and Redis sees one round trip per batch, not
//! per message. Which envelopes go to which node is decided by [`route`], plain code with
//! its own tests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::join_all;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::hub::shards::shard_of;
use super::hub::HubHandle;
use super::peer::PeerSet;
use super::settle::{IdleWaiters, Settle};
use crate::bindings::{Bindings, BindingsError};
use crate::cluster::forward::Envelope;
use crate::cluster::membership::Membership;
use crate::cluster::{LivePeers, NodeInfo};
use crate::ids::{NodeId, UserId};
use crate::metrics::{ActorKind, Counters, Stage};
use crate::store::{Accepted, Delivery};

/// What dispatch needs to reach other nodes.
#[derive(Clone)]
pub struct ClusterLink {
    pub me: NodeId,
    /// Reads the liveness of nodes a binding names that the live-peer view lacks.
    pub membership: Arc<Membership>,
    pub bindings: Arc<dyn Bindings>,
    pub live: LivePeers,
    pub peers: PeerSet,
    pub counters: Arc<Counters>,
}

impl ClusterLink {
    /// Queues `items` for `node` if it is live (a dead node's binding is skipped).
    fn forward(&self, node: &NodeId, items: Vec<Envelope>) {
        if let Some(info) = self.live.get(node) {
            self.peers.forward(node, &info.internal, items);
        }
    }

    /// Nodes bound in `nodes` that the live-peer view does not know (a node that started
    /// since the last refresh) are looked up now: the live ones join the view, so their
    /// devices get this batch instead of nothing. Answers how many joined.
    async fn resolve_unknown(&self, nodes: &[Vec<NodeId>]) -> usize {
        let mut unknown: Vec<NodeId> = nodes
            .iter()
            .flatten()
            .filter(|n| **n != self.me && !self.live.contains(n))
            .cloned()
            .collect();
        if unknown.is_empty() {
            return 0;
        }
        unknown.sort_unstable();
        unknown.dedup();
        match self.membership.lookup(&unknown).await {
            Ok(found) => {
                let alive: Vec<NodeInfo> = found.into_iter().flatten().collect();
                let n = alive.len();
                for info in alive {
                    self.live.insert(info);
                }
                n
            }
            Err(e) => {
                Counters::add(&self.counters.route_errors, 1);
                debug!(error = %e, "could not read the liveness of unknown bound nodes");
                0
            }
        }
    }
}

/// Hands accepted messages to the hub and, in cluster mode, to the dispatch workers.
#[derive(Clone)]
pub struct DispatchHandle {
    hub: HubHandle,
    counters: Arc<Counters>,
    cluster: Option<(ClusterLink, Arc<[Addr<DispatchWorker>]>)>,
}

impl DispatchHandle {
    /// Single-node dispatch: everything is local.
    pub fn local(hub: HubHandle, counters: Arc<Counters>) -> Self {
        Self {
            hub,
            counters,
            cluster: None,
        }
    }

    /// Cluster dispatch with `workers` dispatch actors on `arbiter`.
    pub fn clustered(
        hub: HubHandle,
        link: ClusterLink,
        workers: usize,
        arbiter: &ArbiterHandle,
    ) -> Self {
        let pool: Vec<Addr<DispatchWorker>> = (0..workers)
            .map(|_| {
                let link = link.clone();
                DispatchWorker::start_in_arbiter(arbiter, move |_| DispatchWorker {
                    link,
                    buf: Vec::new(),
                    busy: false,
                    last_warn: None,
                    settled: IdleWaiters::default(),
                })
            })
            .collect();
        Self {
            hub,
            counters: link.counters.clone(),
            cluster: Some((link, pool.into())),
        }
    }

    /// Resolves once every delivery dispatched before the call has been routed and its
    /// forwards sent (or given up on): a drain calls it after the last request finished.
    pub async fn settle(&self) {
        let Some((link, pool)) = &self.cluster else {
            return;
        };
        join_all(pool.iter().map(|w| {
            let (tx, rx) = oneshot::channel();
            w.do_send(Settle(tx));
            rx
        }))
        .await;
        link.peers.settle().await;
    }

    /// Dispatches what the store accepted; duplicates carry nothing to deliver.
    pub fn dispatch(&self, accepted: &mut [Accepted]) {
        let mut deliveries = Vec::new();
        for a in accepted.iter_mut() {
            if let Some(frame) = a.broadcast.take() {
                self.hub.broadcast(frame.clone());
                if let Some((link, _)) = &self.cluster {
                    for peer in link.live.all() {
                        if peer.id != link.me {
                            link.forward(&peer.id, vec![Envelope::Broadcast(frame.clone())]);
                        }
                    }
                }
            }
            deliveries.append(&mut a.deliveries);
        }
        if self.counters.timing() {
            for d in &deliveries {
                if let Some(at) = d.frame.arrived_us() {
                    self.counters.stage(Stage::Dispatched, at);
                }
            }
        }
        let Some((_, pool)) = &self.cluster else {
            self.hub.deliver(deliveries);
            return;
        };
        if deliveries.is_empty() {
            return;
        }
        self.hub.deliver(deliveries.clone());
        let mut per_worker: HashMap<usize, Vec<Delivery>> = HashMap::new();
        for d in deliveries {
            per_worker
                .entry(shard_of(&d.user, pool.len()))
                .or_default()
                .push(d);
        }
        for (i, batch) in per_worker {
            self.counters.actor(ActorKind::Dispatch).sent(1);
            pool[i].do_send(Dispatch(batch));
        }
    }
}

/// The envelopes each remote node gets for `batch`, given the nodes bound to each of
/// `users` (`nodes[i]` for `users[i]`). This node is skipped (the hub already has them);
/// per node, envelopes keep the batch's order.
pub fn route(
    me: &NodeId,
    batch: &[Delivery],
    users: &[UserId],
    nodes: &[Vec<NodeId>],
) -> HashMap<NodeId, Vec<Envelope>> {
    let bound: HashMap<&UserId, &Vec<NodeId>> = users.iter().zip(nodes.iter()).collect();
    let mut per_node: HashMap<NodeId, Vec<Envelope>> = HashMap::new();
    for d in batch {
        for n in bound.get(&d.user).map_or(&[][..], |v| v.as_slice()) {
            if n != me {
                per_node
                    .entry(n.clone())
                    .or_default()
                    .push(Envelope::Message(d.clone()));
            }
        }
    }
    per_node
}

/// Deliveries for one worker to route to remote nodes.
#[derive(Message)]
#[rtype(result = "()")]
struct Dispatch(Vec<Delivery>);

/// Looks recipients up and forwards to their remote nodes.
struct DispatchWorker {
    link: ClusterLink,
    /// Deliveries waiting for the next lookup.
    buf: Vec<Delivery>,
    /// A lookup is in flight.
    busy: bool,
    /// When the last lookup failure was logged.
    last_warn: Option<Instant>,
    /// Waiting for the worker to be idle (a drain).
    settled: IdleWaiters,
}

impl DispatchWorker {
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.buf.is_empty() {
            self.busy = false;
            self.settled.release();
            return;
        }
        self.busy = true;
        let batch = std::mem::take(&mut self.buf);
        let mut users: Vec<UserId> = batch.iter().map(|d| d.user.clone()).collect();
        users.sort_unstable();
        users.dedup();
        let link = self.link.clone();
        ctx.spawn(
            async move {
                let nodes = link.bindings.lookup(&users).await;
                if let Ok(nodes) = &nodes {
                    let joined = link.resolve_unknown(nodes).await;
                    Counters::add(&link.counters.peers_resolved, joined as u64);
                }
                (users, nodes)
            }
            .into_actor(self)
            .map(move |(users, nodes), act, ctx| {
                act.forward(&batch, &users, nodes);
                act.flush(ctx);
            }),
        );
    }

    fn forward(
        &mut self,
        batch: &[Delivery],
        users: &[UserId],
        nodes: Result<Vec<Vec<NodeId>>, BindingsError>,
    ) {
        match nodes {
            Ok(nodes) => {
                let per_node = route(&self.link.me, batch, users, &nodes);
                tracing::debug!(users = users.len(), nodes = per_node.len(), "routed batch");
                for (node, items) in per_node {
                    self.link.forward(&node, items);
                }
            }
            Err(e) => {
                Counters::add(&self.link.counters.route_errors, 1);
                self.link.counters.actor(ActorKind::Dispatch).error();
                // One line per second at most while Redis is down; the counter has the rest.
                if self
                    .last_warn
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
                {
                    self.last_warn = Some(Instant::now());
                    warn!(error = %e, deliveries = batch.len(), "binding lookup failed; remote recipients get these from the store on reconnect");
                }
            }
        }
    }
}

impl Actor for DispatchWorker {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        self.link.counters.actor(ActorKind::Dispatch).started();
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.link.counters.actor(ActorKind::Dispatch).stopped();
    }
}

impl Handler<Dispatch> for DispatchWorker {
    type Result = ();

    fn handle(&mut self, msg: Dispatch, ctx: &mut Self::Context) {
        let counters = self.link.counters.clone();
        let _timed = counters.handling(ActorKind::Dispatch);
        self.buf.extend(msg.0);
        if !self.busy {
            self.flush(ctx);
        }
    }
}

impl Handler<Settle> for DispatchWorker {
    type Result = ();

    fn handle(&mut self, msg: Settle, _ctx: &mut Self::Context) {
        self.settled.wait(self.busy, msg.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(user: &str, seq: u64) -> Delivery {
        Delivery {
            user: UserId::parse(user).unwrap(),
            seq,
            frame: crate::frames::Frame::from(format!("{{\"seq\":{seq}}}")),
        }
    }

    fn seqs(items: &[Envelope]) -> Vec<(String, u64)> {
        items
            .iter()
            .map(|e| match e {
                Envelope::Message(d) => (d.user.to_string(), d.seq),
                Envelope::Broadcast(_) => panic!("no broadcasts here"),
            })
            .collect()
    }

    #[test]
    fn deliveries_go_to_every_bound_remote_node_in_batch_order() {
        let n = |s: &str| NodeId::parse(s).unwrap();
        let u = |s: &str| UserId::parse(s).unwrap();
        let batch = [d("a", 1), d("b", 1), d("a", 2), d("c", 1)];
        let users = [u("a"), u("b"), u("c")];
        let nodes = [vec![n("me"), n("n2")], vec![n("n2"), n("n3")], vec![]];
        let per_node = route(&n("me"), &batch, &users, &nodes);
        assert_eq!(per_node.len(), 2, "this node and unbound users get nothing");
        assert_eq!(
            seqs(&per_node[&n("n2")]),
            vec![("a".into(), 1), ("b".into(), 1), ("a".into(), 2)]
        );
        assert_eq!(seqs(&per_node[&n("n3")]), vec![("b".into(), 1)]);
    }
}
