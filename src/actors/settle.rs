//! Waiting for a forwarding actor to go idle: a drain sends [`Settle`] to every dispatch
//! worker and peer forwarder, and each answers once it has nothing queued and nothing in
//! flight ([`IdleWaiters`]).

use actix::prelude::*;
use tokio::sync::oneshot;

/// Answered once the actor is idle.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Settle(pub oneshot::Sender<()>);

/// The [`Settle`]s an actor has not answered yet.
#[derive(Default)]
pub(super) struct IdleWaiters(Vec<oneshot::Sender<()>>);

impl IdleWaiters {
    /// Answers `tx` now when the actor is idle, else at the next [`Self::release`].
    pub(super) fn wait(&mut self, busy: bool, tx: oneshot::Sender<()>) {
        if busy {
            self.0.push(tx);
        } else {
            let _ = tx.send(());
        }
    }

    /// The actor went idle: answers everyone waiting.
    pub(super) fn release(&mut self) {
        for w in self.0.drain(..) {
            let _ = w.send(());
        }
    }
}
