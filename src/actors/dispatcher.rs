//! Routes stored messages to the sessions that should get them.
//!
//! Every delivery is offered to the local hub first (it drops users with no local
//! session). In cluster mode a pool of [`DispatchWorker`] actors also looks the recipients
//! up in the route table and forwards to the nodes holding them. A user's messages always
//! go through the same worker (hash of the user id), and a worker has one lookup in flight
//! at a time, batching whatever arrived meanwhile into the next pipelined lookup, so per-user
//! order holds and Redis sees one round trip per batch, not per message.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use actix::prelude::*;
use tracing::warn;

use super::hub::Hub;
use super::messages::{counted_deliver, Broadcast};
use super::stats::Counters;
use crate::cluster::peer::{Envelope, PeerSet};
use crate::cluster::LivePeers;
use crate::ids::{NodeId, UserId};
use crate::routes::RouteTable;
use crate::store::{Accepted, Delivery};

/// What a dispatcher needs to reach other nodes.
#[derive(Clone)]
pub struct ClusterLink {
    pub me: NodeId,
    pub routes: Arc<dyn RouteTable>,
    pub live: LivePeers,
    pub peers: PeerSet,
    pub counters: Arc<Counters>,
}

impl ClusterLink {
    fn forward(&self, node: &NodeId, items: Vec<Envelope>) {
        if let Some(info) = self.live.get(node) {
            self.peers.forward(node, &info.internal, items);
        }
    }
}

/// Hands accepted messages to the hub and, in cluster mode, to the dispatch workers.
#[derive(Clone)]
pub struct Dispatcher {
    hub: Addr<Hub>,
    counters: Arc<Counters>,
    cluster: Option<(ClusterLink, Arc<[Addr<DispatchWorker>]>)>,
}

impl Dispatcher {
    /// A single-node dispatcher: everything is local.
    pub fn local(hub: Addr<Hub>, counters: Arc<Counters>) -> Self {
        Self {
            hub,
            counters,
            cluster: None,
        }
    }

    /// A cluster dispatcher with `workers` dispatch actors on `arbiter`.
    pub fn clustered(
        hub: Addr<Hub>,
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
                })
            })
            .collect();
        Self {
            hub,
            counters: link.counters.clone(),
            cluster: Some((link, pool.into())),
        }
    }

    /// Dispatches what the store accepted; duplicates carry nothing to deliver.
    pub fn dispatch(&self, accepted: &mut [Accepted]) {
        let mut deliveries = Vec::new();
        for a in accepted.iter_mut() {
            if let Some(frame) = a.broadcast.take() {
                self.hub
                    .do_send(Broadcast::counted(frame.clone(), &self.counters));
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
        if deliveries.is_empty() {
            return;
        }
        let Some((_, pool)) = &self.cluster else {
            self.hub
                .do_send(counted_deliver(deliveries, &self.counters));
            return;
        };
        self.hub
            .do_send(counted_deliver(deliveries.clone(), &self.counters));
        let mut per_worker: HashMap<usize, Vec<Delivery>> = HashMap::new();
        for d in deliveries {
            per_worker
                .entry(worker_of(&d.user, pool.len()))
                .or_default()
                .push(d);
        }
        for (i, batch) in per_worker {
            pool[i].do_send(Dispatch(batch));
        }
    }
}

fn worker_of(user: &UserId, n: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    user.as_str().hash(&mut h);
    (h.finish() % n as u64) as usize
}

/// Deliveries for one worker to route to remote nodes.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Dispatch(pub Vec<Delivery>);

/// Looks recipients up and forwards to their remote nodes.
pub struct DispatchWorker {
    link: ClusterLink,
    /// Deliveries waiting for the next lookup.
    buf: Vec<Delivery>,
    /// A lookup is in flight.
    busy: bool,
    /// When the last lookup failure was logged.
    last_warn: Option<std::time::Instant>,
}

impl DispatchWorker {
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.buf.is_empty() {
            self.busy = false;
            return;
        }
        self.busy = true;
        let batch = std::mem::take(&mut self.buf);
        let mut users: Vec<UserId> = batch.iter().map(|d| d.user.clone()).collect();
        users.sort_unstable();
        users.dedup();
        let routes = self.link.routes.clone();
        ctx.spawn(
            async move {
                let nodes = routes.lookup(&users).await;
                (users, nodes)
            }
            .into_actor(self)
            .map(move |(users, nodes), act, ctx| {
                match nodes {
                    Ok(nodes) => {
                        let where_: HashMap<&UserId, &Vec<NodeId>> =
                            users.iter().zip(nodes.iter()).collect();
                        let mut per_node: HashMap<&NodeId, Vec<Envelope>> = HashMap::new();
                        for d in &batch {
                            for n in where_.get(&d.user).map_or(&[][..], |v| v.as_slice()) {
                                if *n != act.link.me {
                                    per_node
                                        .entry(n)
                                        .or_default()
                                        .push(Envelope::Message(d.clone()));
                                }
                            }
                        }
                        tracing::debug!(users = users.len(), nodes = per_node.len(), "routed batch");
                        for (node, items) in per_node {
                            act.link.forward(node, items);
                        }
                    }
                    Err(e) => {
                        Counters::add(&act.link.counters.route_errors, 1);
                        // One line per second at most while Redis is down; the counter has the rest.
                        if act.last_warn.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1)) {
                            act.last_warn = Some(std::time::Instant::now());
                            warn!(error = %e, deliveries = batch.len(), "route lookup failed; remote recipients get these from the store on reconnect");
                        }
                    }
                }
                act.flush(ctx);
            }),
        );
    }
}

impl Actor for DispatchWorker {
    type Context = Context<Self>;
}

impl Handler<Dispatch> for DispatchWorker {
    type Result = ();

    fn handle(&mut self, msg: Dispatch, ctx: &mut Self::Context) {
        self.buf.extend(msg.0);
        if !self.busy {
            self.flush(ctx);
        }
    }
}
