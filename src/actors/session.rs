//! One actor per WebSocket connection: heartbeats, token expiry, in-order delivery with
//! replay from the store, and a bounded outbound queue.
//!
//! Delivery state is `delivered`, the highest seq written towards the socket. Live pushes
//! arrive from the hub in the user's seq order; a push that skips ahead (a gap) or arrives
//! while a replay is running is held in `pending` and merged once the store read finished,
//! so replayed and live messages interleave without gaps, reordering or duplicates.
//!
//! Outbound frames go through `out`, drained by [`Writer`] into the `actix-ws` session as
//! fast as the socket takes them. A client that lets `out` reach `session.outbound_queue`
//! frames is closed with 4002.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Instant;

use actix::prelude::*;
use actix_ws::{Message, ProtocolError};
use bytes::Bytes;
use bytestring::ByteString;
use futures_util::Sink;
use tracing::debug;

use super::cursors::CursorWriter;
use super::hub::Hub;
use super::messages::{Ack, CloseReason, GetCursor, Join, Leave, Push};
use super::stats::Counters;
use crate::auth::{unix_now, TokenVerifier};
use crate::config::SessionConfig;
use crate::frames::{self, ClientFrame, FrameError};
use crate::ids::{DeviceId, NodeId, Seq, SessionId, UserId};
use crate::store::{MessageStore, StoreError};

/// Wait before re-reading a page the store held back (a seq that may still be stored).
const GAP_RETRY: std::time::Duration = std::time::Duration::from_millis(100);
/// Re-reads of held-back pages before the session goes live without them (the store holds
/// a page back for at most one append budget, seconds; this is only a safety net).
const MAX_HELD_READS: u16 = 300;

/// Longest a new session waits for its route binding before reading the store anyway.
const BIND_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Pause before reading again after a store read failed.
const STORE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);
/// Messages read from the store per replay page.
const REPLAY_PAGE: usize = 200;
/// Wait before re-checking the outbound queue during a long replay.
const REPLAY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(5);
/// Attempts at the initial replay read while the store is unreachable, and the pause
/// between them; live messages are held meanwhile.
const INITIAL_ATTEMPTS: u8 = 5;
const INITIAL_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Why the session reads the store.
#[derive(Debug, Clone, Copy)]
enum SyncKind {
    /// On connect, from the resume point; the number is the attempt.
    Initial(u8),
    /// The next page of a replay.
    Continue,
    /// Live messages skipped ahead of `delivered`.
    Gap,
}

/// What a session needs from its node, shared by all sessions.
pub struct SessionDeps {
    pub node: NodeId,
    pub cfg: SessionConfig,
    pub hub: Addr<Hub>,
    pub cursors: Addr<CursorWriter>,
    pub store: Arc<dyn MessageStore>,
    pub verifier: Arc<TokenVerifier>,
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

enum Out {
    Text(ByteString),
    Ping,
    Pong(Bytes),
    Close(CloseReason),
}

/// The session actor.
pub struct WsSession {
    id: SessionId,
    user: UserId,
    device: DeviceId,
    /// Unix seconds at which the token runs out unless refreshed by a ping.
    expires_at: u64,
    resume: ResumeFrom,
    deps: Arc<SessionDeps>,
    sink: actix_ws::Session,
    out: VecDeque<Out>,
    /// Waker of the idle [`Writer`], woken when `out` gains a frame.
    writer: Option<Waker>,
    /// Last time anything arrived from the client.
    last_heard: Instant,
    /// Highest seq written towards the socket.
    delivered: Seq,
    /// Highest seq the client acked.
    acked: Seq,
    /// A store read (initial replay or gap fill) is running.
    syncing: bool,
    /// Live messages held while syncing or waiting for a gap to fill.
    pending: BTreeMap<Seq, ByteString>,
    /// The store's newest seq at the last read that was not held back: seqs up to it that
    /// the read did not return do not exist (expired, or their append failed).
    checked_upto: Seq,
    /// Consecutive reads the store held back.
    held_reads: u16,
    /// A gap read, started after the current gap was seen, has completed: whatever it did
    /// not return for the gap the store does not have.
    gap_read_done: bool,
    closing: bool,
}

impl WsSession {
    pub fn new(
        user: UserId,
        device: DeviceId,
        expires_at: u64,
        resume: ResumeFrom,
        deps: Arc<SessionDeps>,
        sink: actix_ws::Session,
    ) -> Self {
        Self {
            id: SessionId::next(),
            user,
            device,
            expires_at,
            resume,
            deps,
            sink,
            out: VecDeque::new(),
            writer: None,
            last_heard: Instant::now(),
            delivered: 0,
            acked: 0,
            syncing: true,
            pending: BTreeMap::new(),
            checked_upto: 0,
            held_reads: 0,
            gap_read_done: false,
            closing: false,
        }
    }

    fn wake_writer(&mut self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    /// Queues a frame that must not be dropped (welcome, replay, errors).
    fn enqueue(&mut self, out: Out) {
        if self.closing {
            return;
        }
        self.out.push_back(out);
        self.wake_writer();
    }

    /// Queues a live frame, closing the session when the client has fallen too far behind.
    fn enqueue_live(&mut self, frame: ByteString, ctx: &mut Context<Self>) {
        if self.out.len() >= self.deps.cfg.outbound_queue {
            Counters::add(&self.deps.counters.slow_consumers, 1);
            self.close(CloseReason::SlowConsumer, ctx);
            return;
        }
        self.enqueue(Out::Text(frame));
    }

    /// Starts closing: drops what is queued, sends the close frame, and stops once it is
    /// written or after the grace period.
    fn close(&mut self, reason: CloseReason, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        debug!(session = %self.id, user = %self.user, code = reason.code(), "closing session");
        self.out.clear();
        self.pending.clear();
        self.out.push_back(Out::Close(reason));
        self.closing = true;
        self.wake_writer();
        ctx.run_later(self.deps.cfg.close_grace(), |_, ctx| ctx.stop());
    }

    /// Reads the store after `delivered` (or the resume point) and merges held live
    /// messages afterwards. Replay goes in pages of [`REPLAY_PAGE`], the next page read only
    /// once the outbound queue has room, so a long replay never holds more than a page and
    /// a queue's worth of frames.
    fn sync(&mut self, kind: SyncKind, ctx: &mut Context<Self>) {
        self.syncing = true;
        let deps = self.deps.clone();
        let user = self.user.clone();
        let device = self.device.clone();
        let resume = self.resume;
        let after_known = self.delivered;
        let replay_limit = deps.cfg.replay_limit as Seq;
        let page_size = REPLAY_PAGE.min(deps.cfg.replay_limit);
        ctx.spawn(
            async move {
                let after = match (kind, resume) {
                    (SyncKind::Initial(_), ResumeFrom::Since(s)) => s,
                    (SyncKind::Initial(_), ResumeFrom::Cursor) => deps
                        .cursors
                        .send(GetCursor { user: user.clone(), device })
                        .await
                        .map_err(|_| StoreError::Unavailable("cursor writer stopped".into()))??
                        .unwrap_or(0),
                    _ => after_known,
                };
                let last = deps.store.last_seq(&user).await?;
                let after = after.min(last);
                // A resume or gap replays at most `replay_limit` messages: the newest ones.
                let start = match kind {
                    SyncKind::Continue => after,
                    _ => after.max(last.saturating_sub(replay_limit)),
                };
                let page = deps.store.read(&user, start, page_size).await?;
                Ok::<_, StoreError>((after, start, page))
            }
            .into_actor(self)
            .map(move |res, act, ctx| match res {
                Ok((after, start, page)) => {
                    if matches!(kind, SyncKind::Initial(_)) {
                        let welcome = frames::welcome(
                            &act.id.to_string(),
                            act.deps.node.as_str(),
                            act.user.as_str(),
                            act.deps.cfg.heartbeat_ms,
                            page.last_seq,
                        );
                        act.enqueue(Out::Text(welcome));
                    }
                    let resume_from = page.first_retained.max(start + 1);
                    if resume_from > after + 1 && page.last_seq > after {
                        act.enqueue(Out::Text(frames::history_truncated(after, resume_from)));
                    }
                    act.delivered = act.delivered.max(after);
                    let full = page.messages.len() == page_size;
                    let n = page.messages.len() as u64;
                    for (seq, frame) in page.messages {
                        if seq > act.delivered {
                            act.delivered = seq;
                            act.enqueue(Out::Text(frame));
                        }
                    }
                    Counters::add(&act.deps.counters.replayed, n);
                    Counters::add(&act.deps.counters.delivered, n);
                    if full && act.delivered < page.last_seq {
                        act.continue_replay(ctx);
                    } else if page.held_back && act.held_reads < MAX_HELD_READS {
                        // A seq after `delivered` may still be on its way into the store
                        // (another node's append): read again rather than skip it.
                        act.held_reads += 1;
                        ctx.run_later(GAP_RETRY, |act, ctx| act.sync(SyncKind::Continue, ctx));
                    } else {
                        act.held_reads = 0;
                        act.checked_upto = act.checked_upto.max(page.last_seq);
                        act.gap_read_done = matches!(kind, SyncKind::Gap);
                        act.syncing = false;
                        act.drain_pending(ctx);
                    }
                }
                Err(err) => {
                    tracing::warn!(session = %act.id, error = %err, "replay read failed");
                    match kind {
                        SyncKind::Initial(tries) if tries + 1 < INITIAL_ATTEMPTS => {
                            ctx.run_later(INITIAL_RETRY, move |act, ctx| {
                                act.sync(SyncKind::Initial(tries + 1), ctx)
                            });
                        }
                        SyncKind::Initial(_) => {
                            act.enqueue(Out::Text(frames::error(
                                "store_unavailable",
                                "missed messages could not be loaded; reconnect later to receive them",
                            )));
                            act.close(CloseReason::GoingAway, ctx);
                        }
                        _ => {
                            // The store could not be read: that says nothing about whether
                            // the missing seqs exist, so keep holding and read again later.
                            ctx.run_later(STORE_RETRY, move |act, ctx| act.sync(kind, ctx));
                        }
                    }
                }
            }),
        );
    }

    /// Reads the next replay page once the outbound queue has drained below its bound.
    fn continue_replay(&mut self, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        if self.out.len() >= self.deps.cfg.outbound_queue {
            ctx.run_later(REPLAY_BACKOFF, |act, ctx| act.continue_replay(ctx));
        } else {
            self.sync(SyncKind::Continue, ctx);
        }
    }

    /// Delivers held live messages in order, reading the store on a gap.
    fn drain_pending(&mut self, ctx: &mut Context<Self>) {
        while let Some(entry) = self.pending.first_entry() {
            let seq = *entry.key();
            if seq <= self.delivered {
                entry.remove();
            } else if seq == self.delivered + 1 {
                let frame = entry.remove();
                self.delivered = seq;
                Counters::add(&self.deps.counters.delivered, 1);
                self.enqueue_live(frame, ctx);
            } else if self.checked_upto >= seq - 1 || self.gap_read_done {
                // A completed read (not held back) had nothing for these seqs: they expired
                // or were never stored (a failed append), so nothing is lost by going on.
                debug!(session = %self.id, from = self.delivered + 1, to = seq - 1, "moving past seqs the store does not have");
                self.delivered = seq - 1;
                self.gap_read_done = false;
            } else {
                self.sync(SyncKind::Gap, ctx);
                return;
            }
        }
        // The read's verdict covers only the gap it was started for.
        self.gap_read_done = false;
    }

    fn on_push_message(&mut self, seq: Seq, frame: ByteString, ctx: &mut Context<Self>) {
        if self.syncing || !self.pending.is_empty() {
            // Every live message is already in the store, so past the bound the hold is
            // just not kept: the replay or gap read picks the message up from the store.
            if self.pending.len() < self.deps.cfg.outbound_queue {
                self.pending.insert(seq, frame);
            }
            if !self.syncing {
                self.drain_pending(ctx);
            }
        } else if seq <= self.delivered {
            // Already replayed.
        } else if seq == self.delivered + 1 {
            self.delivered = seq;
            Counters::add(&self.deps.counters.delivered, 1);
            self.enqueue_live(frame, ctx);
        } else {
            self.pending.insert(seq, frame);
            self.drain_pending(ctx);
        }
    }

    fn on_text(&mut self, text: &str) {
        match ClientFrame::parse(text) {
            Ok(ClientFrame::Ping { token }) => {
                if let Some(token) = token {
                    match self.deps.verifier.verify(&token) {
                        Ok(id) if id.device.as_ref().is_some_and(|d| *d != self.device) => {
                            self.enqueue(Out::Text(frames::error(
                                "token_device_mismatch",
                                "refresh token is bound to another device; session expiry unchanged",
                            )))
                        }
                        Ok(id) if id.user == self.user => {
                            self.expires_at = self.expires_at.max(id.expires_at);
                        }
                        Ok(_) => self.enqueue(Out::Text(frames::error(
                            "token_user_mismatch",
                            "refresh token is for another user; session expiry unchanged",
                        ))),
                        Err(e) => self.enqueue(Out::Text(frames::error(
                            e.code(),
                            &format!("{e}; session expiry unchanged"),
                        ))),
                    }
                }
                self.enqueue(Out::Text(frames::pong()));
            }
            Ok(ClientFrame::Ack { seq }) => {
                let seq = seq.min(self.delivered);
                if seq > self.acked {
                    self.acked = seq;
                    self.deps.cursors.do_send(Ack {
                        user: self.user.clone(),
                        device: self.device.clone(),
                        seq,
                    });
                }
            }
            Err(FrameError::UnknownType(t)) => self.enqueue(Out::Text(frames::error(
                "unknown_frame",
                &format!("unknown frame type `{t}`; expected ping or ack"),
            ))),
            Err(FrameError::Malformed(e)) => self.enqueue(Out::Text(frames::error(
                "bad_frame",
                &format!("frame is not a valid ping or ack: {e}"),
            ))),
        }
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        if self.last_heard.elapsed() > self.deps.cfg.heartbeat_timeout() {
            Counters::add(&self.deps.counters.heartbeat_timeouts, 1);
            self.close(CloseReason::HeartbeatTimeout, ctx);
        } else if unix_now() > self.expires_at + self.deps.verifier.leeway_s {
            self.close(CloseReason::AuthExpired, ctx);
        } else {
            self.enqueue(Out::Ping);
        }
    }
}

impl Actor for WsSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.deps.cfg.outbound_queue);
        Counters::add(&self.deps.counters.sessions_opened, 1);
        Counters::add(&self.deps.counters.sessions_live, 1);
        let (bound, is_bound) = tokio::sync::oneshot::channel();
        self.deps.hub.do_send(Join {
            user: self.user.clone(),
            device: self.device.clone(),
            session: self.id,
            push: ctx.address().recipient(),
            bound,
        });
        ctx.spawn(Writer);
        // Expiry and silence are checked more often than the ping interval so that a short
        // heartbeat timeout (tests) or an expiring token is acted on promptly.
        let tick = (self.deps.cfg.heartbeat() / 2).max(std::time::Duration::from_millis(10));
        let mut since_ping = std::time::Duration::ZERO;
        ctx.run_interval(tick, move |act, ctx| {
            since_ping += tick;
            if act.last_heard.elapsed() > act.deps.cfg.heartbeat_timeout()
                || unix_now() > act.expires_at + act.deps.verifier.leeway_s
                || since_ping >= act.deps.cfg.heartbeat()
            {
                since_ping = std::time::Duration::ZERO;
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
            .map(|(), act, ctx| act.sync(SyncKind::Initial(0), ctx)),
        );
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        Counters::sub(&self.deps.counters.sessions_live, 1);
        self.deps.hub.do_send(Leave {
            user: self.user.clone(),
            session: self.id,
        });
    }
}

impl Handler<Push> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: Push, ctx: &mut Self::Context) {
        if self.closing {
            return;
        }
        match msg {
            Push::Message { seq, frame } => self.on_push_message(seq, frame, ctx),
            Push::Broadcast(frame) => {
                Counters::add(&self.deps.counters.delivered, 1);
                self.enqueue_live(frame, ctx);
            }
            Push::Close(reason) => self.close(reason, ctx),
        }
    }
}

impl StreamHandler<Result<Message, ProtocolError>> for WsSession {
    fn handle(&mut self, item: Result<Message, ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        if self.closing {
            return;
        }
        match item {
            Ok(Message::Text(text)) => self.on_text(&text),
            Ok(Message::Binary(_)) => self.enqueue(Out::Text(frames::error(
                "binary_not_supported",
                "send JSON text frames",
            ))),
            Ok(Message::Ping(bytes)) => self.enqueue(Out::Pong(bytes)),
            Ok(Message::Pong(_)) | Ok(Message::Nop) => {}
            Ok(Message::Close(_)) => self.close(CloseReason::Normal, ctx),
            Ok(Message::Continuation(_)) => self.enqueue(Out::Text(frames::error(
                "fragmented_not_supported",
                "send each frame unfragmented",
            ))),
            Err(ProtocolError::Overflow) => self.close(CloseReason::FrameTooBig, ctx),
            Err(err) => {
                debug!(session = %self.id, error = %err, "websocket protocol error");
                self.close(CloseReason::ProtocolError, ctx);
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // The client went away (TCP closed); nothing more can be written.
        ctx.stop();
    }
}

/// Drains `WsSession::out` into the socket: polled as part of the session's own task, so it
/// sees the actor's state directly and never needs a lock or a second task.
struct Writer;

impl ActorFuture<WsSession> for Writer {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut WsSession,
        ctx: &mut Context<WsSession>,
        task: &mut std::task::Context<'_>,
    ) -> Poll<()> {
        loop {
            if act.out.is_empty() {
                match &act.writer {
                    Some(w) if w.will_wake(task.waker()) => {}
                    _ => act.writer = Some(task.waker().clone()),
                }
                return Poll::Pending;
            }
            match Pin::new(&mut act.sink).poll_ready(task) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => {
                    ctx.stop();
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(())) => {
                    // unwrap: `out` was checked to be non-empty above
                    let (msg, last) = match act.out.pop_front().unwrap() {
                        Out::Text(t) => (Message::Text(t), false),
                        Out::Ping => (Message::Ping(Bytes::new()), false),
                        Out::Pong(b) => (Message::Pong(b), false),
                        Out::Close(r) => (
                            Message::Close(Some(actix_ws::CloseReason {
                                code: r.code().into(),
                                description: Some(r.text().into()),
                            })),
                            true,
                        ),
                    };
                    if Pin::new(&mut act.sink).start_send(msg).is_err() || last {
                        ctx.stop();
                        return Poll::Ready(());
                    }
                }
            }
        }
    }
}
