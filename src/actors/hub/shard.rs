//! One hub shard: its actor's address, handed out from the start, and the thread it runs
//! on, which is one of the public HTTP workers'. The address exists before the actor runs:
//! whatever is sent to it waits in the mailbox until a worker takes the shard
//! ([`Shard::take_here`]), which every worker does while it starts, before the node accepts
//! its first connection.
//!
//! Why on the HTTP workers rather than threads of their own: a targeted message is parsed
//! and stored by the worker that read its POST and delivered by its user's shard; on a
//! thread of its own that shard had to be woken for it, on the worker it is often already
//! running (same thread for half the users with two workers, busy for the others). Two
//! threads instead of four on a two-core machine: 27.2 against 30.5 µs of server CPU per
//! targeted message (docs/benchmarks.md, eighth round).

use std::sync::{Mutex, OnceLock};

use actix::dev::channel::{channel, AddressReceiver};
use actix::prelude::*;

use super::actor::Hub;

/// Mailbox slots of a shard (actix's default for any actor).
const MAILBOX: usize = 16;

/// A hub shard, started or still waiting for its thread.
pub(super) struct Shard {
    pub(super) addr: Addr<Hub>,
    /// The thread the shard, and its users' sessions, run on; set when it is taken.
    home: OnceLock<ArbiterHandle>,
    /// The mailbox's receiving end until a worker runs the actor.
    waiting: Mutex<Option<AddressReceiver<Hub>>>,
}

impl Shard {
    /// A shard whose actor does not run yet; messages sent to it wait.
    pub(super) fn new() -> Self {
        let (tx, rx) = channel(MAILBOX);
        Self {
            addr: Addr::new(tx),
            home: OnceLock::new(),
            waiting: Mutex::new(Some(rx)),
        }
    }

    /// Runs `hub` as this shard on the current thread (an actix arbiter), unless a thread
    /// already took the shard; whether this call took it.
    pub(super) fn take_here(&self, hub: impl FnOnce() -> Hub) -> bool {
        let taken = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(rx) = taken else {
            return false;
        };
        let _ = self.home.set(Arbiter::current());
        Context::with_receiver(rx).run(hub());
        true
    }

    /// The thread the shard runs on, once taken.
    pub(super) fn home(&self) -> Option<&ArbiterHandle> {
        self.home.get()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::GetStats;
    use super::*;
    use crate::bindings::memory::MemoryBindings;
    use crate::ids::NodeId;
    use crate::metrics::Counters;

    fn hub() -> Hub {
        let node = NodeId::parse("n1").unwrap();
        let bindings = Arc::new(MemoryBindings::default());
        let every = Duration::from_secs(1);
        Hub::new(node, bindings, every, every, Arc::new(Counters::default()))
    }

    #[test]
    fn what_is_sent_before_a_thread_takes_the_shard_is_answered_once_one_does() {
        actix::System::new().block_on(async {
            let shard = Shard::new();
            assert!(shard.home().is_none(), "no home before a thread takes it");
            let early = shard.addr.send(GetStats);
            assert!(shard.take_here(hub));
            assert!(shard.home().is_some());
            let stats = early.await.expect("answered by the shard once it runs");
            assert_eq!((stats.sessions, stats.users), (0, 0));
        });
    }

    #[test]
    fn a_shard_is_taken_by_one_thread_only() {
        actix::System::new().block_on(async {
            let shard = Shard::new();
            assert!(shard.take_here(hub));
            let second = shard.take_here(|| unreachable!("built only by the call that takes it"));
            assert!(!second, "a second thread finds it taken");
            assert!(shard.addr.connected());
        });
    }
}
