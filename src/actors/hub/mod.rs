//! The hub: per-node registry of live sessions (user -> sessions), reached only through
//! [`HubHandle`].
//!
//! The hub is sharded: `server.workers` hub actors, each on a thread of its own or on one
//! of the public HTTP workers' (`server.hub_threads`, `shard.rs`), each holding the users
//! that hash to it ([`shards`]). A user's sessions run on its shard's thread
//! ([`HubHandle::home`]), so the hub reaches them without crossing threads and a delivery
//! crosses at most once (from the HTTP worker that stored it, when that is another
//! thread); fan-out and targeted delivery grow with the number of shards.
//!
//! The handle is the one place that accounts for the hub backlog (deliveries handed to the
//! hub and not yet fanned out; a broadcast counts once per live session): it adds when it
//! sends, the actor subtracts when it handles, and ingestion asks [`HubHandle::backlog`]
//! before accepting more. The messages themselves are private to this module.

mod actor;
mod batch;
mod drain;
#[cfg(test)]
mod handle_tests;
mod messages;
mod shard;
pub mod shards;

pub use self::drain::{DrainPace, DrainPolicy};

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytestring::ByteString;
use futures_util::future::join_all;
use tokio::sync::oneshot;

use self::actor::Hub;
use self::messages::{
    Broadcast, Deliver, Drain, GetStats, Join, Leave, LocalUsers, Positions, Presence, Rebind,
    RebindAll,
};
use self::shard::{MakeHub, Shard};
use super::session::SessionHandle;
use crate::bindings::Bindings;
use crate::ids::{DeviceId, NodeId, Seq, SessionId, UserId};
use crate::metrics::{ActorKind, Counters};
use crate::store::Delivery;

/// How often pending binds/unbinds are written, as one batch.
pub const BINDING_FLUSH: Duration = Duration::from_millis(50);

/// A snapshot of the hub.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, utoipa::ToSchema)]
pub struct HubStats {
    pub sessions: usize,
    pub users: usize,
    pub draining: bool,
}

/// One connected device, as presence reports it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct DevicePresence {
    pub device: DeviceId,
    pub session: String,
    pub node: String,
    pub connected_at_ms: u64,
}

/// The hub has stopped (the node is shutting down).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("hub is stopping")]
pub struct HubGone;

/// The node's way to its hub shards.
#[derive(Clone)]
pub struct HubHandle {
    shards: Arc<[Shard]>,
    /// Builds a shard's actor, on the thread that takes the shard.
    make: MakeHub,
    counters: Arc<Counters>,
}

impl HubHandle {
    /// `n` hub shards that run once threads take them ([`run_on_own_threads`] or
    /// [`take_shard_here`]); until then what is sent to them waits. Every local user is
    /// re-bound every `refresh`; broadcasts go out in batches of `broadcast_batch` (zero:
    /// one by one).
    ///
    /// [`run_on_own_threads`]: Self::run_on_own_threads
    /// [`take_shard_here`]: Self::take_shard_here
    pub fn new(
        n: usize,
        node: NodeId,
        bindings: Arc<dyn Bindings>,
        refresh: Duration,
        broadcast_batch: Duration,
        counters: Arc<Counters>,
    ) -> Self {
        let c = counters.clone();
        let make = move || {
            let (node, bindings, c) = (node.clone(), bindings.clone(), c.clone());
            Hub::new(node, bindings, refresh, broadcast_batch, c)
        };
        Self {
            shards: (0..n.max(1)).map(|_| Shard::new()).collect(),
            make: Arc::new(make),
            counters,
        }
    }

    /// Runs every shard on a new thread of its own (`server.hub_threads = "own"`); the
    /// threads are returned for the caller to stop.
    pub fn run_on_own_threads(&self) -> Vec<Arbiter> {
        let threads: Vec<Arbiter> = self.shards.iter().map(|_| Arbiter::new()).collect();
        for (shard, thread) in self.shards.iter().zip(&threads) {
            shard.take_on(&thread.handle(), &self.make);
        }
        threads
    }

    /// Runs the first shard no thread has taken yet on the current thread, an actix arbiter
    /// (`"workers"`: each public HTTP worker calls this as it starts), unless the thread
    /// already runs one of this hub's; false when it runs none and every shard is taken (a
    /// worker started again after its thread died: its shard went with it).
    pub fn take_shard_here(&self) -> bool {
        thread_local! {
            /// The hub one of whose shards this thread runs (a worker whose services are
            /// built again keeps it); weak, and so never the address of another hub.
            static RUNS_A_SHARD_OF: std::cell::RefCell<std::sync::Weak<[Shard]>> =
                std::cell::RefCell::new(std::sync::Weak::<[Shard; 0]>::new());
        }
        let this = Arc::downgrade(&self.shards);
        if RUNS_A_SHARD_OF.with_borrow(|runs| runs.ptr_eq(&this)) {
            return true;
        }
        let took = self.shards.iter().any(|s| s.take_here(&self.make));
        if took {
            RUNS_A_SHARD_OF.set(this);
        }
        took
    }

    /// Shards not yet taken by a thread.
    pub fn waiting_shards(&self) -> usize {
        self.shards.iter().filter(|s| s.home().is_none()).count()
    }

    /// Shards whose thread stopped (the node is stopping, or a thread died: its users get
    /// nothing live until the node restarts, and readiness says so).
    pub fn stopped_shards(&self) -> usize {
        self.shards.iter().filter(|s| s.stopped()).count()
    }

    fn n(&self) -> usize {
        self.shards.len()
    }

    fn shard(&self, user: &UserId) -> &Shard {
        &self.shards[shards::shard_of(user, self.n())]
    }

    /// The thread `user`'s sessions run on (its shard's), once a thread has taken it.
    pub fn home(&self, user: &UserId) -> Option<&ArbiterHandle> {
        self.shard(user).home()
    }

    /// Sends without waiting, counted as sent to the hub (its queue depth is sent minus
    /// handled); false, sending nothing, when the shard has stopped.
    fn tell<M>(&self, shard: &Shard, msg: M) -> bool
    where
        M: Message<Result: Send> + Send + 'static,
        Hub: Handler<M>,
    {
        if shard.stopped() {
            return false;
        }
        self.counters.actor(ActorKind::Hub).sent(1);
        shard.addr.do_send(msg);
        true
    }

    /// Sends and waits for the answer, counted like [`tell`](Self::tell).
    async fn ask<M>(&self, shard: &Shard, msg: M) -> Result<M::Result, HubGone>
    where
        M: Message<Result: Send> + Send + 'static,
        Hub: Handler<M>,
    {
        self.counters.actor(ActorKind::Hub).sent(1);
        shard.addr.send(msg).await.map_err(|_| HubGone)
    }

    /// Registers a session; the receiver fires once its user's binding is written.
    pub fn join(
        &self,
        user: UserId,
        device: DeviceId,
        session: SessionId,
        handle: SessionHandle,
    ) -> oneshot::Receiver<()> {
        let (bound, is_bound) = oneshot::channel();
        let shard = self.shard(&user);
        self.tell(
            shard,
            Join {
                user,
                device,
                session,
                handle,
                bound,
            },
        );
        is_bound
    }

    /// Unregisters a session.
    pub fn leave(&self, user: UserId, session: SessionId) {
        self.tell(self.shard(&user), Leave { user, session });
    }

    /// Deliveries handed to the hub and not yet fanned out.
    pub fn backlog(&self) -> u64 {
        Counters::get(&self.counters.hub_backlog)
    }

    fn count(&self, n: u64) {
        Counters::add(&self.counters.hub_backlog, n);
    }

    /// Takes back what was counted for a stopped shard, which will never handle it.
    fn uncount(&self, n: u64) {
        Counters::sub(&self.counters.hub_backlog, n);
    }

    /// Pushes stored messages to their users' local sessions.
    pub fn deliver(&self, items: Vec<Delivery>) {
        if items.is_empty() {
            return;
        }
        self.count(items.len() as u64);
        let parts = shards::split(items, self.n(), |d| &d.user);
        for (shard, part) in self.shards.iter().zip(parts) {
            let n = part.len() as u64;
            if n > 0 && !self.tell(shard, Deliver(part)) {
                self.uncount(n);
            }
        }
    }

    /// [`deliver`](Self::deliver), answering the users with no session here.
    pub async fn deliver_reporting_missing(
        &self,
        items: Vec<Delivery>,
    ) -> Result<Vec<UserId>, HubGone> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        self.count(items.len() as u64);
        let parts = shards::split(items, self.n(), |d| &d.user);
        // A stopped shard has no sessions: its users are missing here.
        let mut missing = Vec::new();
        let mut asks = Vec::with_capacity(parts.len());
        for (shard, part) in self.shards.iter().zip(parts) {
            if part.is_empty() {
                continue;
            }
            if shard.stopped() {
                self.uncount(part.len() as u64);
                missing.extend(part.into_iter().map(|d| d.user));
            } else {
                asks.push(self.ask(shard, Deliver(part)));
            }
        }
        for answer in join_all(asks).await {
            missing.extend(answer?);
        }
        Ok(missing)
    }

    /// Pushes a broadcast frame to every local session (counted once per live session).
    pub fn broadcast(&self, frame: ByteString) {
        let weight = Counters::get(&self.counters.sessions_live).max(1);
        self.count(weight);
        let n = self.n();
        for (i, shard) in self.shards.iter().enumerate() {
            let weight = shards::weight_share(weight, i, n);
            let frame = frame.clone();
            if !self.tell(shard, Broadcast { frame, weight }) {
                self.uncount(weight);
            }
        }
    }

    /// Re-binds the given users if they are still here (else unbinds, with `unbind_absent`).
    pub fn rebind(&self, users: Vec<UserId>, unbind_absent: bool) {
        let parts = shards::split(users, self.n(), |u| u);
        for (shard, users) in self.shards.iter().zip(parts) {
            if !users.is_empty() {
                self.tell(
                    shard,
                    Rebind {
                        users,
                        unbind_absent,
                    },
                );
            }
        }
    }

    /// Re-binds every local user now.
    pub fn rebind_all(&self) {
        for shard in self.shards.iter() {
            self.tell(shard, RebindAll);
        }
    }

    /// The user's devices connected to this node.
    pub async fn presence(&self, user: UserId) -> Result<Vec<DevicePresence>, HubGone> {
        let shard = self.shard(&user);
        if shard.stopped() {
            return Ok(Vec::new());
        }
        self.ask(shard, Presence(user)).await
    }

    /// Every user with a session here (for the position check).
    pub async fn local_users(&self) -> Result<Vec<UserId>, HubGone> {
        let mut users = Vec::new();
        let live = self.shards.iter().filter(|s| !s.stopped());
        for part in join_all(live.map(|s| self.ask(s, LocalUsers))).await {
            users.extend(part?);
        }
        Ok(users)
    }

    /// Tells each local session of `users[i]` that its newest stored seq is `seqs[i]`.
    pub fn positions(&self, users: Vec<UserId>, seqs: Vec<Seq>) {
        let pairs: Vec<(UserId, Seq)> = users.into_iter().zip(seqs).collect();
        let parts = shards::split(pairs, self.n(), |(u, _)| u);
        for (shard, part) in self.shards.iter().zip(parts) {
            if !part.is_empty() {
                let (users, seqs) = part.into_iter().unzip();
                self.tell(shard, Positions { users, seqs });
            }
        }
    }

    /// Refuses new sessions and starts telling every session to reconnect elsewhere
    /// (`{"type":"reconnect"}`, then close 1012), spread over time as `policy` says (each
    /// shard takes its share of the rate); how many sessions there were.
    /// [`HubHandle::stats`] shows them leave.
    pub async fn drain(&self, policy: DrainPolicy) -> usize {
        let share = shards::drain_share(&policy, self.n());
        join_all(self.shards.iter().map(|s| self.ask(s, Drain(share))))
            .await
            .into_iter()
            .map(|n| n.unwrap_or(0))
            .sum()
    }

    /// Sessions, users, draining (summed over shards).
    pub async fn stats(&self) -> Result<HubStats, HubGone> {
        let mut total = HubStats::default();
        for s in join_all(self.shards.iter().map(|s| self.ask(s, GetStats))).await {
            let s = s?;
            total.sessions += s.sessions;
            total.users += s.users;
            total.draining |= s.draining;
        }
        Ok(total)
    }
}
