//! The hub actor: user -> sessions, reached by sessions only through [`SessionHandle`], and
//! keeping the binding table told which users this node holds (batched every
//! [`BINDING_FLUSH`]).
//!
//! Fan-out offers without waiting: a session whose mailbox is full is closed as a slow
//! consumer and dropped from the registry, so a stuck client never makes the hub queue
//! without bound.

mod broadcast;
mod queries;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tracing::{debug, warn};

use super::batch::Batch;
use super::drain::{Spread, DRAIN_TICK};
use super::{Deliver, Drain, Join, Leave, Positions, Rebind, RebindAll, BINDING_FLUSH};
use crate::actors::session::{Lane, Offered, SessionHandle};
use crate::bindings::Bindings;
use crate::clock::now_ms;
use crate::frames::CloseReason;
use crate::ids::{DeviceId, NodeId, Seq, SessionId, UserId};
use crate::metrics::{ActorKind, Counters};

struct Member {
    session: SessionId,
    device: DeviceId,
    handle: SessionHandle,
    /// The session's own socket, when it runs on this shard's thread (broadcasts).
    lane: Option<Lane>,
    connected_at_ms: u64,
}

/// The hub actor; one per node.
pub(super) struct Hub {
    node: NodeId,
    users: HashMap<UserId, Vec<Member>>,
    /// Highest seq pushed to each local user's sessions: the position check only tells a
    /// user's sessions about a newer seq than this (a push that never reached the hub).
    pushed: HashMap<UserId, Seq>,
    sessions: usize,
    draining: bool,
    /// The drain under way: sessions still to be told to reconnect.
    spread: Option<Spread>,
    bindings: Arc<dyn Bindings>,
    /// Users that gained their first local session since the last route flush.
    to_bind: Vec<UserId>,
    /// Users that lost their last local session since the last route flush.
    to_unbind: Vec<UserId>,
    /// How often every local user is re-bound (the binding's TTL / 3).
    refresh: Duration,
    /// A route write is in flight; what accumulates meanwhile goes in the next one.
    flushing: bool,
    /// Sessions waiting for their user's binding to be written.
    bind_waiters: Vec<tokio::sync::oneshot::Sender<()>>,
    /// Broadcast frames waiting for their batch to go out.
    batch: Batch,
    counters: Arc<Counters>,
}

impl Hub {
    pub(super) fn new(
        node: NodeId,
        bindings: Arc<dyn Bindings>,
        refresh: Duration,
        broadcast_batch: Duration,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            batch: Batch::new(broadcast_batch),
            refresh,
            flushing: false,
            bind_waiters: Vec::new(),
            node,
            users: HashMap::new(),
            pushed: HashMap::new(),
            sessions: 0,
            draining: false,
            spread: None,
            bindings,
            to_bind: Vec::new(),
            to_unbind: Vec::new(),
            counters,
        }
    }

    fn remove(&mut self, user: &UserId, session: SessionId) -> bool {
        let Some(members) = self.users.get_mut(user) else {
            return false;
        };
        let before = members.len();
        members.retain(|m| m.session != session);
        let removed = members.len() < before;
        if removed {
            self.sessions -= 1;
            self.counters.users_by_sessions.moved(before, members.len());
        }
        if members.is_empty() {
            self.users.remove(user);
            self.pushed.remove(user);
            self.to_unbind.push(user.clone());
        }
        removed
    }

    /// What an offer to `member` means for the registry: false when it must be dropped.
    fn kept(member: &Member, offered: Offered, counters: &Counters) -> bool {
        match offered {
            Offered::Taken | Offered::Written => true,
            Offered::Full => {
                debug!(session = %member.session, "mailbox full, closing slow consumer");
                Counters::add(&counters.slow_consumers, 1);
                member.handle.close(CloseReason::SlowConsumer);
                false
            }
            Offered::Gone => false,
        }
    }

    fn flush_bindings(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || (self.to_bind.is_empty() && self.to_unbind.is_empty()) {
            return;
        }
        // A user that came and went (or went and came) within one flush: the current map
        // decides.
        let mut bind: Vec<UserId> = std::mem::take(&mut self.to_bind)
            .into_iter()
            .filter(|u| self.users.contains_key(u))
            .collect();
        let mut unbind: Vec<UserId> = std::mem::take(&mut self.to_unbind)
            .into_iter()
            .filter(|u| !self.users.contains_key(u))
            .collect();
        bind.sort_unstable();
        bind.dedup();
        unbind.sort_unstable();
        unbind.dedup();
        let waiters = std::mem::take(&mut self.bind_waiters);
        let bindings = self.bindings.clone();
        let node = self.node.clone();
        let counters = self.counters.clone();
        self.flushing = true;
        ctx.spawn(
            async move {
                if !bind.is_empty() {
                    if let Err(err) = bindings.bind(&node, &bind).await {
                        counters.actor(ActorKind::Hub).error();
                        warn!(error = %err, users = bind.len(), "bind failed");
                    }
                }
                if !unbind.is_empty() {
                    if let Err(err) = bindings.unbind(&node, &unbind).await {
                        counters.actor(ActorKind::Hub).error();
                        warn!(error = %err, users = unbind.len(), "unbind failed");
                    }
                }
            }
            .into_actor(self)
            .map(move |(), hub, ctx| {
                // Waiters go on even after a failure: the binding table is a cache, and a
                // session must not hang on it.
                for w in waiters {
                    let _ = w.send(());
                }
                hub.flushing = false;
                hub.flush_bindings(ctx);
            }),
        );
    }
}

impl Actor for Hub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.counters.actor(ActorKind::Hub).started();
        ctx.run_interval(BINDING_FLUSH, |hub, ctx| hub.flush_bindings(ctx));
        // The seed's "heartbeat renews the binding", batched: one pipelined write per
        // refresh for all local users instead of one per client ping.
        ctx.run_interval(self.refresh, |hub, _ctx| {
            hub.to_bind.extend(hub.users.keys().cloned());
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.counters.actor(ActorKind::Hub).stopped();
    }
}

impl Handler<Join> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Join, ctx: &mut Self::Context) {
        let c = self.counters.clone();
        let _timed = c.handling(ActorKind::Hub);
        if let Some(s) = &self.spread {
            msg.handle.restart(s.notice());
            return;
        }
        let members = self.users.entry(msg.user.clone()).or_default();
        if self.bindings.shared() {
            // Re-binding an already bound user is harmless and keeps the wait uniform.
            self.to_bind.push(msg.user);
            self.bind_waiters.push(msg.bound);
        } else {
            if members.is_empty() {
                self.to_bind.push(msg.user);
            }
            let _ = msg.bound.send(());
        }
        self.counters
            .users_by_sessions
            .moved(members.len(), members.len() + 1);
        members.push(Member {
            session: msg.session,
            device: msg.device,
            lane: msg.handle.take_lane(),
            handle: msg.handle,
            connected_at_ms: now_ms(),
        });
        self.sessions += 1;
        if self.bindings.shared() {
            self.flush_bindings(ctx);
        }
    }
}

impl Handler<Leave> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Leave, _ctx: &mut Self::Context) {
        let c = self.counters.clone();
        let _timed = c.handling(ActorKind::Hub);
        self.remove(&msg.user, msg.session);
    }
}

impl Handler<Deliver> for Hub {
    type Result = MessageResult<Deliver>;

    fn handle(&mut self, msg: Deliver, _ctx: &mut Self::Context) -> Self::Result {
        let c = self.counters.clone();
        let _timed = c.handling(ActorKind::Hub);
        Counters::sub(&self.counters.hub_backlog, msg.0.len() as u64);
        let mut missing = Vec::new();
        for d in msg.0 {
            let Some(members) = self.users.get_mut(&d.user) else {
                if !missing.contains(&d.user) {
                    missing.push(d.user);
                }
                continue;
            };
            let counters = &self.counters;
            let before = members.len();
            members.retain(|m| {
                let offered = m.handle.offer_message(d.seq, d.frame.clone());
                Hub::kept(m, offered, counters)
            });
            let dropped = before - members.len();
            if dropped > 0 {
                self.sessions -= dropped;
                counters.users_by_sessions.moved(before, members.len());
                if members.is_empty() {
                    self.users.remove(&d.user);
                    self.pushed.remove(&d.user);
                    self.to_unbind.push(d.user);
                    continue;
                }
            }
            match self.pushed.get_mut(&d.user) {
                Some(p) => *p = (*p).max(d.seq),
                None => {
                    self.pushed.insert(d.user, d.seq);
                }
            }
        }
        MessageResult(missing)
    }
}

impl Handler<Rebind> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Rebind, _ctx: &mut Self::Context) {
        let c = self.counters.clone();
        let _timed = c.handling(ActorKind::Hub);
        for u in msg.users {
            if self.users.contains_key(&u) {
                self.to_bind.push(u);
            } else if msg.unbind_absent {
                self.to_unbind.push(u);
            }
        }
    }
}

impl Handler<RebindAll> for Hub {
    type Result = ();

    fn handle(&mut self, _msg: RebindAll, _ctx: &mut Self::Context) {
        let c = self.counters.clone();
        let _timed = c.handling(ActorKind::Hub);
        self.to_bind.extend(self.users.keys().cloned());
    }
}

impl Handler<Positions> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Positions, _ctx: &mut Self::Context) {
        let c = self.counters.clone();
        let _timed = c.handling(ActorKind::Hub);
        for (user, seq) in msg.users.iter().zip(msg.seqs) {
            if self.pushed.get(user).is_some_and(|p| *p >= seq) {
                // Everything up to it went through here to every session of the user.
                continue;
            }
            for m in self.users.get(user).map_or(&[][..], |v| v.as_slice()) {
                // A full mailbox only misses this check; the next one comes.
                let _ = m.handle.offer_position(seq);
            }
        }
    }
}

impl Handler<Drain> for Hub {
    type Result = usize;

    /// Snapshots the sessions, then closes them a tick at a time at the policy's pace.
    fn handle(&mut self, msg: Drain, ctx: &mut Self::Context) -> usize {
        let c = self.counters.clone();
        let _timed = c.handling(ActorKind::Hub);
        self.draining = true;
        let left: Vec<SessionHandle> = self
            .users
            .values()
            .flat_map(|ms| ms.iter().map(|m| m.handle.clone()))
            .collect();
        let n = left.len();
        self.spread = Some(Spread::start(left, &msg.0));
        self.close_due(ctx);
        n
    }
}

impl Hub {
    /// Closes the sessions the drain's pace says are due, and comes back a tick later
    /// until every one has been told.
    fn close_due(&mut self, ctx: &mut Context<Self>) {
        if self.spread.as_mut().is_some_and(|s| !s.tell_due()) {
            ctx.run_later(DRAIN_TICK, |act, ctx| act.close_due(ctx));
        }
    }
}
