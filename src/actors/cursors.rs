//! Batches per-device ack cursors into one store write per flush interval; reached through
//! [`CursorsHandle`], its messages are private to this module.
//!
//! Acks arrive at client speed; the store sees at most one `save_cursors` call per
//! `store.cursor_flush_ms`. A resume point asked for before its ack is written is answered
//! from the pending batch, so a quick reconnect to the same node never replays acked work.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tracing::warn;

use crate::ids::{DeviceId, Seq, UserId};
use crate::metrics::{ActorKind, Counters};
use crate::store::{CursorUpdate, MessageStore, StoreError};

type Key = (UserId, DeviceId);

/// This device has handled everything up to `seq`.
#[derive(Message)]
#[rtype(result = "()")]
struct Ack {
    user: UserId,
    device: DeviceId,
    seq: Seq,
}

/// The device's resume point, including acks not yet written.
#[derive(Message)]
#[rtype(result = "Result<Option<Seq>, StoreError>")]
struct GetCursor {
    user: UserId,
    device: DeviceId,
}

/// Write everything pending now (drain).
#[derive(Message)]
#[rtype(result = "()")]
struct FlushCursors;

/// The node's way to its cursor writer.
#[derive(Clone)]
pub struct CursorsHandle {
    addr: Addr<CursorWriter>,
    counters: Arc<Counters>,
}

impl CursorsHandle {
    /// Starts the writer on `arbiter`; it writes at most once per `every`.
    pub fn start(
        arbiter: &ArbiterHandle,
        store: Arc<dyn MessageStore>,
        every: Duration,
        counters: Arc<Counters>,
    ) -> Self {
        let c = counters.clone();
        let addr =
            CursorWriter::start_in_arbiter(arbiter, move |_| CursorWriter::new(store, every, c));
        Self { addr, counters }
    }

    fn sent(&self) {
        self.counters.actor(ActorKind::CursorWriter).sent(1);
    }

    /// Records a cumulative ack (written with the next flush).
    pub fn ack(&self, user: UserId, device: DeviceId, seq: Seq) {
        self.sent();
        self.addr.do_send(Ack { user, device, seq });
    }

    /// The device's resume point: the stored cursor or a newer ack not yet written.
    pub async fn cursor(&self, user: UserId, device: DeviceId) -> Result<Option<Seq>, StoreError> {
        self.sent();
        self.addr
            .send(GetCursor { user, device })
            .await
            .map_err(|_| StoreError::Unavailable("cursor writer stopped".into()))?
    }

    /// Writes everything pending; answers once the write finished. False when the writer
    /// had already stopped.
    pub async fn flush(&self) -> bool {
        self.sent();
        self.addr.send(FlushCursors).await.is_ok()
    }
}

/// The cursor-writer actor; one per node.
struct CursorWriter {
    store: Arc<dyn MessageStore>,
    flush_every: Duration,
    /// Acks not yet handed to the store.
    pending: HashMap<Key, Seq>,
    /// Acks handed to the store whose write has not finished.
    inflight: HashMap<Key, Seq>,
    writing: bool,
    counters: Arc<Counters>,
}

impl CursorWriter {
    fn new(store: Arc<dyn MessageStore>, flush_every: Duration, counters: Arc<Counters>) -> Self {
        Self {
            counters,
            store,
            flush_every,
            pending: HashMap::new(),
            inflight: HashMap::new(),
            writing: false,
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.writing || self.pending.is_empty() {
            return;
        }
        self.writing = true;
        self.inflight = std::mem::take(&mut self.pending);
        let updates: Vec<CursorUpdate> = self
            .inflight
            .iter()
            .map(|((user, device), seq)| CursorUpdate {
                user: user.clone(),
                device: device.clone(),
                seq: *seq,
            })
            .collect();
        let store = self.store.clone();
        ctx.wait(
            async move { store.save_cursors(updates).await }
                .into_actor(self)
                .map(|res, act, _ctx| {
                    act.writing = false;
                    let written = std::mem::take(&mut act.inflight);
                    if let Err(err) = res {
                        act.counters.actor(ActorKind::CursorWriter).error();
                        warn!(error = %err, cursors = written.len(), "ack cursor write failed, will retry");
                        for (k, seq) in written {
                            let e = act.pending.entry(k).or_insert(seq);
                            *e = (*e).max(seq);
                        }
                    }
                }),
        );
    }
}

impl Actor for CursorWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.counters.actor(ActorKind::CursorWriter).started();
        ctx.run_interval(self.flush_every, |act, ctx| act.flush(ctx));
    }

    fn stopping(&mut self, ctx: &mut Self::Context) -> Running {
        if self.pending.is_empty() {
            Running::Stop
        } else {
            self.flush(ctx);
            Running::Continue
        }
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.counters.actor(ActorKind::CursorWriter).stopped();
    }
}

impl Handler<Ack> for CursorWriter {
    type Result = ();

    fn handle(&mut self, msg: Ack, _ctx: &mut Self::Context) {
        let c = self.counters.clone();
        let _timed = c.handling(ActorKind::CursorWriter);
        let e = self.pending.entry((msg.user, msg.device)).or_insert(0);
        *e = (*e).max(msg.seq);
    }
}

impl Handler<GetCursor> for CursorWriter {
    type Result = ResponseFuture<Result<Option<Seq>, StoreError>>;

    fn handle(&mut self, msg: GetCursor, _ctx: &mut Self::Context) -> Self::Result {
        let _timed = self.counters.handling(ActorKind::CursorWriter);
        let key = (msg.user, msg.device);
        let local = self
            .pending
            .get(&key)
            .copied()
            .max(self.inflight.get(&key).copied());
        let store = self.store.clone();
        Box::pin(async move {
            let stored = store.cursor(&key.0, &key.1).await?;
            Ok(stored.max(local))
        })
    }
}

impl Handler<FlushCursors> for CursorWriter {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _msg: FlushCursors, ctx: &mut Self::Context) -> Self::Result {
        let c = self.counters.clone();
        let _timed = c.handling(ActorKind::CursorWriter);
        // `flush` uses ctx.wait, so this reply is sent only after the write finished.
        self.flush(ctx);
        Box::pin(fut::ready(()))
    }
}
