//! One hub shard: its actor's address, handed out from the start, and the thread it runs
//! on. The address exists before the actor runs: whatever is sent to it waits in the
//! mailbox until a thread takes the shard, either a thread of its own
//! ([`Shard::take_on`], `server.hub_threads = "own"`) or one of the public HTTP workers as
//! it starts ([`Shard::take_here`], `"workers"`), before the node accepts its first
//! connection.
//!
//! On the workers, a targeted message is parsed and stored by the worker that read its POST
//! and delivered by its user's shard, which is often already running there (the same thread
//! for half the users with two workers): two busy threads instead of four on two cores. The
//! trade-offs, measured in docs/benchmarks.md (eighth round): on the embedded store, less
//! server CPU per targeted message and less memory per connection; but a POST that reaches
//! a worker during its shard's broadcast pass waits for the pass, and with the store on the
//! same two cores the MongoDB path cost the node more CPU per message.

use std::sync::{Arc, Mutex, OnceLock};

use actix::dev::channel::{channel, AddressReceiver};
use actix::prelude::*;

use super::actor::Hub;

/// Mailbox slots of a shard (actix's default for any actor).
const MAILBOX: usize = 16;

/// Builds a shard's actor, on the thread that runs it.
pub(super) type MakeHub = Arc<dyn Fn() -> Hub + Send + Sync>;

/// A hub shard, started or still waiting for its thread.
pub(super) struct Shard {
    pub(super) addr: Addr<Hub>,
    /// The thread the shard, and its users' sessions, run on; set when it is taken.
    home: OnceLock<ArbiterHandle>,
    /// The mailbox's receiving end until a thread runs the actor.
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

    /// Claims the shard for `home`, unless a thread already took it.
    fn take(&self, home: &ArbiterHandle) -> Option<AddressReceiver<Hub>> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let rx = waiting.take()?;
        let _ = self.home.set(home.clone());
        Some(rx)
    }

    /// Runs the shard on the current thread (an actix arbiter), unless a thread already
    /// took it; whether this call took it.
    pub(super) fn take_here(&self, make: &MakeHub) -> bool {
        let Some(rx) = self.take(&Arbiter::current()) else {
            return false;
        };
        Context::with_receiver(rx).run(make());
        true
    }

    /// Runs the shard on `home` (the actor is built there), unless a thread already took
    /// it; the shard's home is known when this returns.
    pub(super) fn take_on(&self, home: &ArbiterHandle, make: &MakeHub) -> bool {
        let Some(rx) = self.take(home) else {
            return false;
        };
        let make = make.clone();
        home.spawn_fn(move || {
            Context::with_receiver(rx).run(make());
        })
    }

    /// The thread the shard runs on, once taken.
    pub(super) fn home(&self) -> Option<&ArbiterHandle> {
        self.home.get()
    }

    /// Its actor ran and is gone (its thread stopped: the node is stopping, or the thread
    /// died). A shard that no thread has taken yet is not stopped: its mailbox waits.
    pub(super) fn stopped(&self) -> bool {
        !self.addr.connected()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::handle_tests::until;
    use super::super::GetStats;
    use super::*;
    use crate::bindings::memory::MemoryBindings;
    use crate::ids::NodeId;
    use crate::metrics::Counters;

    fn make() -> MakeHub {
        Arc::new(|| {
            let node = NodeId::parse("n1").unwrap();
            let bindings = Arc::new(MemoryBindings::default());
            let every = Duration::from_secs(1);
            Hub::new(node, bindings, every, every, Arc::new(Counters::default()))
        })
    }

    #[test]
    fn what_is_sent_before_a_thread_takes_the_shard_is_answered_once_one_does() {
        actix::System::new().block_on(async {
            let shard = Shard::new();
            assert!(shard.home().is_none(), "no home before a thread takes it");
            let early = shard.addr.send(GetStats);
            assert!(shard.take_here(&make()));
            assert!(shard.home().is_some());
            let stats = early.await.expect("answered by the shard once it runs");
            assert_eq!((stats.sessions, stats.users), (0, 0));
        });
    }

    #[test]
    fn a_shard_taken_on_a_thread_of_its_own_has_its_home_at_once_and_answers_from_there() {
        actix::System::new().block_on(async {
            let shard = Shard::new();
            let own = Arbiter::new();
            assert!(shard.take_on(&own.handle(), &make()));
            assert!(shard.home().is_some(), "known before the actor runs");
            let stats = shard.addr.send(GetStats).await.expect("answered");
            assert_eq!(stats.sessions, 0);
            assert!(!shard.stopped());
            own.stop();
            until("a shard whose thread stopped is stopped", || {
                shard.stopped()
            })
            .await;
        });
    }

    #[test]
    fn a_shard_no_thread_has_taken_is_not_stopped() {
        assert!(!Shard::new().stopped());
    }

    #[test]
    fn a_shard_is_taken_by_one_thread_only() {
        actix::System::new().block_on(async {
            let shard = Shard::new();
            assert!(shard.take_here(&make()));
            let never: MakeHub = Arc::new(|| unreachable!("built only by the call that takes it"));
            assert!(!shard.take_here(&never), "a worker finds it taken");
            assert!(
                !shard.take_on(&Arbiter::current(), &never),
                "so does a thread of its own"
            );
            let stats = shard
                .addr
                .send(GetStats)
                .await
                .expect("the first actor answers");
            assert_eq!(stats.sessions, 0);
        });
    }
}
