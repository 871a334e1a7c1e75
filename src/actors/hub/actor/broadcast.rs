//! The hub's broadcasts: frames join the shard's batch (`hub::batch`) and go out, encoded once,
//! to every local session when it is due: straight to the socket of each session with
//! nothing queued (the session's lane), through the mailbox of the others.

use actix::prelude::*;

use super::Hub;
use crate::actors::hub::batch::Next;
use crate::actors::hub::Broadcast;
use crate::actors::session::Offered;
use crate::metrics::{ActorKind, Counters};

impl Handler<Broadcast> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Broadcast, ctx: &mut Self::Context) {
        let c = self.counters.clone();
        let _timed = c.handling(ActorKind::Hub);
        Counters::sub(&self.counters.hub_backlog, msg.weight);
        match self.batch.add(msg.frame) {
            Next::FlushNow => self.flush_broadcasts(),
            Next::FlushIn(delay) => {
                ctx.run_later(delay, |hub, _| hub.flush_broadcasts());
            }
            Next::Wait => {}
        }
    }
}

impl Hub {
    /// Offers the waiting broadcast frames, encoded once, to every local session.
    fn flush_broadcasts(&mut self) {
        let Some(frames) = self.batch.take() else {
            return;
        };
        let counters = &self.counters;
        let mut dropped = 0;
        let mut written = 0u64;
        let mut emptied = Vec::new();
        for (user, members) in self.users.iter_mut() {
            let before = members.len();
            members.retain(|m| {
                let offered = m.handle.offer_broadcast(m.lane.as_ref(), &frames);
                written += u64::from(offered == Offered::Written);
                Hub::kept(m, offered, counters)
            });
            if members.len() < before {
                dropped += before - members.len();
                counters.users_by_sessions.moved(before, members.len());
            }
            if members.is_empty() {
                emptied.push(user.clone());
            }
        }
        // Frames a session took through its mailbox it counts itself.
        Counters::add(&counters.delivered, written * u64::from(frames.frames));
        self.sessions -= dropped;
        for u in emptied {
            self.users.remove(&u);
            self.pushed.remove(&u);
            self.to_unbind.push(u);
        }
    }
}
