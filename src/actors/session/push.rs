//! What the hub pushes to a session: a message (through [`Order`](super::order::Order)), a
//! position check, a broadcast (straight to the outbound queue), a close or a restart
//! notice; a session whose queue went over its budget is closed with 4002.

use actix::prelude::*;
use tracing::debug;

use super::handle::Push;
use super::outbound::Out;
use super::WsSession;
use crate::frames::CloseReason;
use crate::metrics::{ActorKind, Counters};

impl Handler<Push> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: Push, ctx: &mut Self::Context) {
        self.gauge.taken();
        let start = self.deps.counters.handling_start();
        self.on_push(msg, ctx);
        self.deps
            .counters
            .actor(ActorKind::Session)
            .handled_since(start);
    }
}

impl WsSession {
    /// What the hub pushed: a message, a broadcast, a position check, a close.
    fn on_push(&mut self, msg: Push, ctx: &mut Context<Self>) {
        if self.out().is_closing() {
            return;
        }
        match msg {
            Push::Message { seq, frame } => {
                // Before the core starts (route not bound yet) a push needs no hold: the
                // first read starts later and finds it in the store.
                let Some(order) = self.order.as_mut() else {
                    return;
                };
                let actions = order.on_push(seq, frame);
                self.act(actions, ctx);
            }
            Push::Position(last_seq) => {
                let Some(order) = self.order.as_mut() else {
                    return;
                };
                let actions = order.on_position(last_seq);
                if !actions.is_empty() {
                    Counters::add(&self.deps.counters.position_catchups, 1);
                    debug!(session = %self.id, user = %self.user, last_seq, delivered = order.delivered(), "behind the store: reading what was missed");
                }
                self.act(actions, ctx);
            }
            Push::Broadcast(frames) => {
                Counters::add(&self.deps.counters.delivered, u64::from(frames.frames));
                self.out().push(Out::Encoded(frames));
            }
            Push::Close(reason) => self.close(reason, ctx),
            Push::Restart(notice) => self.close_after(Some(notice), CloseReason::Restart, ctx),
        }
        if self.out().is_over() {
            Counters::add(&self.deps.counters.slow_consumers, 1);
            self.close(CloseReason::SlowConsumer, ctx);
        }
    }
}
