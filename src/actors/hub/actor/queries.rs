//! What the hub answers about itself without changing anything: a user's devices here
//! (presence), the users it holds, and its counts for the dashboard.

use actix::prelude::*;

use super::Hub;
use crate::actors::hub::{DevicePresence, GetStats, HubStats, LocalUsers, Presence};
use crate::metrics::ActorKind;

impl Handler<Presence> for Hub {
    type Result = MessageResult<Presence>;

    fn handle(&mut self, msg: Presence, _ctx: &mut Self::Context) -> Self::Result {
        let c = self.counters.clone();
        let _timed = c.handling(ActorKind::Hub);
        let devices = self
            .users
            .get(&msg.0)
            .map(|members| {
                members
                    .iter()
                    .map(|m| DevicePresence {
                        device: m.device.clone(),
                        session: m.session.to_string(),
                        node: self.node.to_string(),
                        connected_at_ms: m.connected_at_ms,
                    })
                    .collect()
            })
            .unwrap_or_default();
        MessageResult(devices)
    }
}

impl Handler<LocalUsers> for Hub {
    type Result = MessageResult<LocalUsers>;

    fn handle(&mut self, _: LocalUsers, _ctx: &mut Self::Context) -> Self::Result {
        let c = self.counters.clone();
        let _timed = c.handling(ActorKind::Hub);
        MessageResult(self.users.keys().cloned().collect())
    }
}

impl Handler<GetStats> for Hub {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _msg: GetStats, _ctx: &mut Self::Context) -> Self::Result {
        let c = self.counters.clone();
        let _timed = c.handling(ActorKind::Hub);
        MessageResult(HubStats {
            sessions: self.sessions,
            users: self.users.len(),
            draining: self.draining,
        })
    }
}
