//! One actor per remote node, forwarding envelopes over HTTP in batches.
//!
//! A peer has at most one POST in flight: what arrives meanwhile is queued and goes in the
//! next batch, so a user's messages reach a peer in the order they were dispatched, and a
//! slow or dead peer only ever fills its own bounded queue, never blocks other peers. A
//! batch is cut by `forward::FORWARD_BATCH` (envelopes and bytes), the limits the
//! receiver's body cap is derived from.
//! Forwarding is best effort on top of the store: a batch that still fails after
//! `cluster.forward_retries` retries is dropped and counted, and its recipients get the
//! messages from the store on their next connection (or the next live message's gap fill).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::Deserialize;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::settle::{IdleWaiters, Settle};
use crate::bindings::Bindings;
use crate::clock::now_ms;
use crate::cluster::forward::{encode, Envelope, FORWARD_BATCH};
use crate::cluster::sign;
use crate::config::ClusterConfig;
use crate::ids::{NodeId, UserId};
use crate::metrics::{ActorKind, Counters, PeerStats, Stage};

/// Largest answer body read from a peer.
const MAX_REPLY: usize = 4 * 1024 * 1024;

/// Dispatch -> peer: queue these envelopes.
#[derive(Message)]
#[rtype(result = "()")]
struct Forward(pub Vec<Envelope>);

/// What every peer actor needs from its node.
pub struct PeerDeps {
    pub me: NodeId,
    pub secret: Vec<u8>,
    pub cfg: ClusterConfig,
    pub bindings: Arc<dyn Bindings>,
    pub counters: Arc<Counters>,
}

thread_local! {
    /// One HTTP client (and connection pool) per arbiter thread.
    static CLIENT: awc::Client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
}

/// A peer's answer.
#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    missing: Vec<UserId>,
}

/// The forwarding actor for one remote node.
struct Peer {
    id: NodeId,
    addr: String,
    deps: Arc<PeerDeps>,
    queue: VecDeque<Envelope>,
    busy: bool,
    /// Waiting for the queue to be empty and no batch in flight (a drain).
    settled: IdleWaiters,
}

impl Peer {
    fn new(id: NodeId, addr: String, deps: Arc<PeerDeps>) -> Self {
        Self {
            id,
            addr,
            deps,
            queue: VecDeque::new(),
            busy: false,
            settled: IdleWaiters::default(),
        }
    }

    /// This peer's readings (looked up per batch: a peer that left and came back gets a
    /// fresh entry).
    fn stats(&self) -> Arc<PeerStats> {
        self.deps.counters.peers.of(self.id.as_str())
    }

    fn send_next(&mut self, ctx: &mut Context<Self>) {
        let stats = self.stats();
        if self.queue.is_empty() {
            stats.queue.store(0, Ordering::Relaxed);
            self.busy = false;
            self.settled.release();
            return;
        }
        self.busy = true;
        let batch = FORWARD_BATCH.take(&mut self.queue);
        stats
            .queue
            .store(self.queue.len() as u64, Ordering::Relaxed);
        let n = batch.len();
        let arrivals: Vec<u64> = batch.iter().filter_map(Envelope::arrived_us).collect();
        let started = Instant::now();
        let body = bytes::Bytes::from(encode(self.deps.me.as_str(), &batch));
        let url = format!("http://{}/internal/v1/deliver", self.addr);
        let deps = self.deps.clone();
        let fut = async move {
            let mut attempt = 0;
            loop {
                match post(&url, &deps, body.clone()).await {
                    Ok(reply) => return Ok(reply),
                    Err(e) if attempt >= deps.cfg.forward_retries => return Err(e),
                    Err(e) => {
                        debug!(error = %e, attempt, "forward failed, retrying");
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(50 << attempt.min(6))).await;
                    }
                }
            }
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            match res {
                Ok(reply) => {
                    debug!(node = %act.id, envelopes = n, missing = reply.missing.len(), "forwarded");
                    Counters::add(&act.deps.counters.forwarded, n as u64);
                    stats.forwarded.fetch_add(n as u64, Ordering::Relaxed);
                    stats.latency.record(started.elapsed());
                    for at in arrivals {
                        act.deps.counters.stage(Stage::Forwarded, at);
                    }
                    if !reply.missing.is_empty() {
                        // The peer has no session for these users: its binding is stale.
                        let bindings = act.deps.bindings.clone();
                        let node = act.id.clone();
                        ctx.spawn(
                            async move {
                                if let Err(e) = bindings.unbind(&node, &reply.missing).await {
                                    debug!(error = %e, "could not remove stale bindings");
                                }
                            }
                            .into_actor(act),
                        );
                    }
                }
                Err(e) => {
                    Counters::add(&act.deps.counters.forward_failures, n as u64);
                    stats.drops.fetch_add(n as u64, Ordering::Relaxed);
                    act.deps.counters.actor(ActorKind::Peer).error();
                    warn!(node = %act.id, error = %e, envelopes = n, "forward failed, dropped (store keeps the messages)");
                }
            }
            act.send_next(ctx);
        }));
    }
}

async fn post(url: &str, deps: &PeerDeps, body: bytes::Bytes) -> Result<Reply, String> {
    let ts = now_ms();
    let sig = sign::sign(&deps.secret, ts, deps.me.as_str(), &body);
    let req = CLIENT.with(|c| {
        c.post(url)
            .timeout(Duration::from_millis(deps.cfg.forward_timeout_ms))
            .insert_header((sign::HDR_NODE, deps.me.as_str()))
            .insert_header((sign::HDR_TS, ts.to_string()))
            .insert_header((sign::HDR_SIG, sig))
            .content_type("application/json")
    });
    let mut resp = req.send_body(body).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("peer answered {}", resp.status()));
    }
    resp.json::<Reply>()
        .limit(MAX_REPLY)
        .await
        .map_err(|e| e.to_string())
}

impl Actor for Peer {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        self.deps.counters.actor(ActorKind::Peer).started();
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.deps.counters.actor(ActorKind::Peer).stopped();
    }
}

impl Handler<Forward> for Peer {
    type Result = ();

    fn handle(&mut self, msg: Forward, ctx: &mut Self::Context) {
        let deps = self.deps.clone();
        let _timed = deps.counters.handling(ActorKind::Peer);
        self.queue.extend(msg.0);
        let cap = self.deps.cfg.peer_queue;
        let stats = self.stats();
        if self.queue.len() > cap {
            let dropped = self.queue.len() - cap;
            self.queue.drain(..dropped);
            Counters::add(&self.deps.counters.forward_failures, dropped as u64);
            stats.drops.fetch_add(dropped as u64, Ordering::Relaxed);
            warn!(node = %self.id, dropped, "peer queue full, dropped oldest envelopes");
        }
        if self.busy {
            stats
                .queue
                .store(self.queue.len() as u64, Ordering::Relaxed);
        } else {
            self.send_next(ctx);
        }
    }
}

impl Handler<Settle> for Peer {
    type Result = ();

    fn handle(&mut self, msg: Settle, _ctx: &mut Self::Context) {
        self.settled.wait(self.busy, msg.0);
    }
}

/// The handle to this node's peer actors, created on first use on the dispatch arbiter.
#[derive(Clone)]
pub struct PeerSet {
    deps: Arc<PeerDeps>,
    arbiter: ArbiterHandle,
    peers: Arc<Mutex<PeerMap>>,
}

/// Peer actors by node id, with the address each was started for.
type PeerMap = HashMap<NodeId, (String, Addr<Peer>)>;

impl PeerSet {
    pub fn new(deps: PeerDeps, arbiter: ArbiterHandle) -> Self {
        Self {
            deps: Arc::new(deps),
            arbiter,
            peers: Arc::default(),
        }
    }

    /// Resolves once every peer forwarder has sent (or given up on) what it had queued.
    pub async fn settle(&self) {
        let peers: Vec<Addr<Peer>> = {
            let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
            peers.values().map(|(_, p)| p.clone()).collect()
        };
        futures_util::future::join_all(peers.iter().map(|p| {
            let (tx, rx) = oneshot::channel();
            p.do_send(Settle(tx));
            rx
        }))
        .await;
    }

    /// Queues `items` for the node `id` reachable at `addr`.
    pub fn forward(&self, id: &NodeId, addr: &str, items: Vec<Envelope>) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let needs_new = match peers.get(id) {
            Some((a, p)) => a != addr || !p.connected(),
            None => true,
        };
        if needs_new {
            let (deps, pid, paddr) = (self.deps.clone(), id.clone(), addr.to_string());
            let peer = Peer::start_in_arbiter(&self.arbiter, move |_| Peer::new(pid, paddr, deps));
            peers.insert(id.clone(), (addr.to_string(), peer));
        }
        self.deps.counters.actor(ActorKind::Peer).sent(1);
        // unwrap: inserted above when absent
        peers.get(id).unwrap().1.do_send(Forward(items));
    }
}
