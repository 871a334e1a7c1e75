//! One actor per WebSocket connection: the actix glue around a session's parts.
//!
//! - [`order::Order`] decides which message frames go out and when the store is read (the
//!   delivery promise; plain logic with its own tests);
//! - [`outbound::Outbound`] holds the frames waiting for the socket and writes them;
//! - `inbound.rs` reads the client's frames (refusing an oversized one at its header) and
//!   `client.rs` answers them;
//! - `push.rs` takes what the hub pushes (messages, broadcasts, position checks, closes);
//! - this file joins the hub, runs the store reads the core asks for,
//!   and keeps heartbeats and token expiry.
//!
//! A session whose outbound queue goes over its budget (`session.outbound_queue` frames or
//! `session.outbound_bytes`) with a live message is closed with 4002; replay pages are read
//! only once the queue has room, and client frames only while it is not full.

mod client;
mod handle;
mod inbound;
mod lane;
pub mod order;
pub mod outbound;
#[cfg(test)]
mod outbound_tests;
mod push;
mod socket;

use std::cell::{RefCell, RefMut};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_rt::net::TcpStream;
use bytes::BytesMut;
use bytestring::ByteString;
use tracing::{debug, info};

pub use self::handle::{Lane, Offered, SessionHandle};
use self::inbound::{Gate, Inbound};
use self::order::{Action, Actions, Limits, Order, ReadFrom};
use self::outbound::{Budget, Out, Outbound, Writer};
use self::socket::Socket;
use super::cursors::CursorsHandle;
use super::hub::HubHandle;
use crate::auth::Authenticator;
use crate::clock::{now_ms, now_s};
use crate::config::SessionConfig;
use crate::frames::{self, CloseReason};
use crate::ids::{DeviceId, NodeId, Seq, SessionId, UserId};
use crate::limits::SessionSlot;
use crate::metrics::{ActorKind, Counters, QueueGauge};
use crate::store::{MessageStore, Page, StoreError};

/// Longest a new session waits for its route binding before reading the store anyway.
const BIND_WAIT: Duration = Duration::from_secs(2);
/// Messages read from the store per replay page.
const REPLAY_PAGE: usize = 200;
/// Wait before re-checking the outbound queue when a read waits for room.
const ROOM_WAIT: Duration = Duration::from_millis(5);
/// Longest the `101` answer waits for the welcome to leave with it (one write instead of
/// two); a slower welcome (a slow route table or store) follows it.
const ANSWER_HOLD: Duration = Duration::from_millis(50);

/// What a session needs from its node, shared by all sessions.
pub struct SessionDeps {
    pub node: NodeId,
    pub cfg: SessionConfig,
    pub hub: HubHandle,
    pub cursors: CursorsHandle,
    pub store: Arc<dyn MessageStore>,
    pub auth: Arc<Authenticator>,
    pub counters: Arc<Counters>,
}

/// Where a new session starts delivering from.
#[derive(Debug, Clone, Copy)]
pub enum ResumeFrom {
    /// `?since=N`: everything after N.
    Since(Seq),
    /// The device's stored ack cursor (everything retained when it has none).
    Cursor,
}

/// Who an upgraded connection is and where it resumes from.
pub struct Opening {
    pub user: UserId,
    pub device: DeviceId,
    /// Unix seconds at which the token runs out.
    pub expires_at: u64,
    pub resume: ResumeFrom,
    /// The user's place among its sessions on this node, held while the session lives.
    pub slot: SessionSlot,
}

/// The session actor.
pub struct WsSession {
    id: SessionId,
    user: UserId,
    device: DeviceId,
    /// Unix seconds at which the token runs out unless refreshed by a ping.
    expires_at: u64,
    resume: ResumeFrom,
    _slot: SessionSlot,
    deps: Arc<SessionDeps>,
    /// Shared with the hub's broadcast lane (same thread, see `lane.rs`).
    out: Rc<RefCell<Outbound>>,
    /// The ordering core; `None` until the route binding is written.
    order: Option<Order>,
    /// Last time anything arrived from the client.
    last_heard: Instant,
    /// The session's mailbox and outbound queue, as the dashboard sees them.
    gauge: Arc<QueueGauge>,
}

impl WsSession {
    /// Starts the session actor of an upgraded connection: `answer` is the `101` answer to
    /// write (with the welcome, see `outbound.rs`), `early` what the client sent after its
    /// request.
    pub fn start(
        opening: Opening,
        deps: Arc<SessionDeps>,
        stream: TcpStream,
        answer: &[u8],
        early: BytesMut,
    ) {
        let socket = Socket::new(stream);
        let gate = Rc::new(Gate::default());
        let inbound = Inbound::new(
            socket.clone(),
            early,
            deps.cfg.max_frame_bytes,
            gate.clone(),
        );
        let budget = Budget {
            frames: deps.cfg.outbound_queue,
            bytes: deps.cfg.outbound_bytes,
        };
        let id = SessionId::next();
        let gauge = deps.counters.queues.register(
            id.0,
            opening.user.shared(),
            opening.device.shared(),
            now_ms(),
        );
        let out = Rc::new(RefCell::new(Outbound::new(
            socket,
            answer,
            budget,
            gate,
            gauge.clone(),
            deps.counters.clone(),
        )));
        WsSession::create(move |ctx| {
            ctx.add_stream(inbound);
            Self {
                id,
                user: opening.user,
                device: opening.device,
                expires_at: opening.expires_at,
                resume: opening.resume,
                _slot: opening.slot,
                deps,
                out,
                order: None,
                last_heard: Instant::now(),
                gauge,
            }
        });
    }

    fn out(&self) -> RefMut<'_, Outbound> {
        self.out.borrow_mut()
    }

    /// Starts closing: drops what is queued, sends the close frame, and stops once it is
    /// written or after the grace period.
    fn close(&mut self, reason: CloseReason, ctx: &mut Context<Self>) {
        self.close_after(None, reason, ctx);
    }

    /// [`Self::close`], with `notice` written just before the close frame.
    fn close_after(
        &mut self,
        notice: Option<ByteString>,
        reason: CloseReason,
        ctx: &mut Context<Self>,
    ) {
        if self.out().is_closing() {
            return;
        }
        debug!(session = %self.id, user = %self.user, code = reason.code(), "closing session");
        self.out().close(notice, reason);
        ctx.run_later(self.deps.cfg.close_grace(), |_, ctx| ctx.stop());
    }

    fn text(&mut self, frame: ByteString) {
        self.out().push(Out::Text(frame));
    }

    /// Carries out what the ordering core decided.
    fn act(&mut self, actions: Actions, ctx: &mut Context<Self>) {
        let deps = self.deps.clone();
        let c = &deps.counters;
        for action in actions {
            match action {
                Action::Welcome { last_seq } => {
                    let welcome = frames::welcome(
                        &self.id.to_string(),
                        self.deps.node.as_str(),
                        self.user.as_str(),
                        self.deps.cfg.heartbeat_ms,
                        last_seq,
                    );
                    self.out().welcome(welcome);
                }
                Action::Truncated { after, resume_from } => {
                    Counters::add(&c.truncated, resume_from - after - 1);
                    info!(session = %self.id, user = %self.user, after, resume_from, "history truncated: seqs in between are not replayed");
                    self.text(frames::history_truncated(after, resume_from));
                }
                Action::Frame { frame, .. } => {
                    Counters::add(&c.delivered, 1);
                    self.out().push(Out::Message(frame));
                }
                Action::Skipped { from, to } => {
                    Counters::add(&c.skipped, to - from + 1);
                    info!(session = %self.id, user = %self.user, from, to, "moving past seqs the store shows will never be stored");
                }
                Action::Read { from, limit, delay } => self.read(from, limit, delay, ctx),
                Action::GiveUp => {
                    self.text(frames::error(
                        "store_unavailable",
                        "missed messages could not be loaded; reconnect later to receive them",
                    ));
                    self.close(CloseReason::GoingAway, ctx);
                }
            }
        }
    }

    /// Runs the read the core asked for, after `delay` and once the outbound queue has room
    /// (so a long replay never holds more than a page and a queue's worth of frames).
    fn read(&mut self, from: ReadFrom, limit: usize, delay: Duration, ctx: &mut Context<Self>) {
        if self.out().is_closing() {
            return;
        }
        if !delay.is_zero() {
            ctx.run_later(delay, move |act, ctx| {
                act.read(from, limit, Duration::ZERO, ctx)
            });
            return;
        }
        if self.out().is_full() {
            ctx.run_later(ROOM_WAIT, move |act, ctx| {
                act.read(from, limit, Duration::ZERO, ctx)
            });
            return;
        }
        let deps = self.deps.clone();
        let (user, device) = (self.user.clone(), self.device.clone());
        ctx.spawn(
            async move {
                let after = match from {
                    ReadFrom::After(s) => s,
                    ReadFrom::DeviceCursor => deps
                        .cursors
                        .cursor(user.clone(), device)
                        .await?
                        .unwrap_or(0),
                };
                let page = deps.store.read(&user, after, limit).await?;
                Ok::<(Seq, Page), StoreError>((after, page))
            }
            .into_actor(self)
            .map(|res, act, ctx| {
                let Some(order) = act.order.as_mut() else {
                    return;
                };
                let actions = match res {
                    Ok((after, page)) => {
                        Counters::add(&act.deps.counters.replayed, page.messages.len() as u64);
                        order.on_page(after, page)
                    }
                    Err(err) => {
                        tracing::warn!(session = %act.id, error = %err, "store read failed");
                        order.on_read_failed()
                    }
                };
                act.act(actions, ctx);
            }),
        );
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        if self.out().is_closing() {
            return;
        }
        if self.last_heard.elapsed() > self.deps.cfg.heartbeat_timeout() {
            Counters::add(&self.deps.counters.heartbeat_timeouts, 1);
            self.close(CloseReason::HeartbeatTimeout, ctx);
        } else if self.deps.auth.expired(self.expires_at, now_s()) {
            self.close(CloseReason::AuthExpired, ctx);
        } else {
            self.out().push(Out::Ping);
        }
    }

    /// Starts the ordering core once the route binding is written.
    fn begin(&mut self, ctx: &mut Context<Self>) {
        let cfg = &self.deps.cfg;
        let limits = Limits {
            page_size: REPLAY_PAGE.min(cfg.replay_limit),
            replay_limit: cfg.replay_limit as u64,
            pending_cap: cfg.outbound_queue,
        };
        let resume = match self.resume {
            ResumeFrom::Since(s) => Some(s),
            ResumeFrom::Cursor => None,
        };
        let (order, first) = Order::start(resume, limits);
        self.order = Some(order);
        self.act(smallvec::smallvec![first], ctx);
    }
}

impl Actor for WsSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.deps.cfg.outbound_queue);
        Counters::add(&self.deps.counters.sessions_opened, 1);
        Counters::add(&self.deps.counters.sessions_live, 1);
        self.deps.counters.actor(ActorKind::Session).started();
        let handle = SessionHandle {
            tx: ctx.address().recipient(),
            gauge: self.gauge.clone(),
            id: self.id,
        };
        let is_bound = self
            .deps
            .hub
            .join(self.user.clone(), self.device.clone(), self.id, handle);
        lane::hand_over(self.id, self.out.clone());
        ctx.spawn(Writer::new(ANSWER_HOLD));
        // Expiry and silence are checked more often than the ping interval so that a short
        // heartbeat timeout (tests) or an expiring token is acted on promptly.
        let tick = (self.deps.cfg.heartbeat() / 2).max(Duration::from_millis(10));
        let mut since_ping = Duration::ZERO;
        ctx.run_interval(tick, move |act, ctx| {
            since_ping += tick;
            if act.last_heard.elapsed() > act.deps.cfg.heartbeat_timeout()
                || act.deps.auth.expired(act.expires_at, now_s())
                || since_ping >= act.deps.cfg.heartbeat()
            {
                since_ping = Duration::ZERO;
                act.heartbeat(ctx);
            }
        });
        // Read the store only once the route is bound (see `Join`); a slow route table
        // delays the replay by at most BIND_WAIT.
        ctx.spawn(
            async move {
                let _ = tokio::time::timeout(BIND_WAIT, is_bound).await;
            }
            .into_actor(self)
            .map(|(), act, ctx| act.begin(ctx)),
        );
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        Counters::sub(&self.deps.counters.sessions_live, 1);
        self.deps.counters.actor(ActorKind::Session).stopped();
        self.deps.counters.queues.unregister(self.id.0);
        lane::withdraw(self.id);
        self.deps.hub.leave(self.user.clone(), self.id);
    }
}
