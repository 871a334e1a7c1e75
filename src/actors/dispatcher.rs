//! Routes stored messages to the sessions that should get them.
//!
//! On a single node every delivery goes to the local hub, which drops those for users with
//! no local session (they get them from the store on their next connection).

use actix::prelude::*;

use super::hub::Hub;
use super::messages::{Broadcast, Deliver};
use crate::store::Accepted;

/// Hands accepted messages to the hub(s) that hold their recipients.
#[derive(Clone)]
pub struct Dispatcher {
    hub: Addr<Hub>,
}

impl Dispatcher {
    pub fn new(hub: Addr<Hub>) -> Self {
        Self { hub }
    }

    /// Dispatches what the store accepted; duplicates carry nothing to deliver.
    pub fn dispatch(&self, accepted: &mut [Accepted]) {
        let mut deliveries = Vec::new();
        for a in accepted.iter_mut() {
            if let Some(frame) = a.broadcast.take() {
                self.hub.do_send(Broadcast(frame));
            }
            deliveries.append(&mut a.deliveries);
        }
        if !deliveries.is_empty() {
            self.hub.do_send(Deliver(deliveries));
        }
    }
}
