//! Per-actor-type readings (live count, queue depth, handled, handling time, errors) and the
//! delivery pipeline's stage latencies. Every actor type reports the same set; queue depth is
//! what its handle sent minus what the actor handled, since actix does not expose mailbox
//! lengths.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::histogram::Histogram;

/// The actor types of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    /// One per WebSocket.
    Session,
    /// The per-node session registry and fan-out.
    Hub,
    /// Dispatch workers: route stored messages to the hub or to peers.
    Dispatch,
    /// One forwarder per peer node.
    Peer,
    /// Batches ack cursors to the store.
    CursorWriter,
    /// Group commit: coalesces producers' appends into one store round trip.
    GroupCommit,
    /// Route keeper: binding expiry and deadline sweeps.
    Keeper,
}

impl ActorKind {
    pub const ALL: [ActorKind; 7] = [
        ActorKind::Session,
        ActorKind::Hub,
        ActorKind::Dispatch,
        ActorKind::Peer,
        ActorKind::CursorWriter,
        ActorKind::GroupCommit,
        ActorKind::Keeper,
    ];

    /// The `actor` label value.
    pub fn name(self) -> &'static str {
        match self {
            ActorKind::Session => "session",
            ActorKind::Hub => "hub",
            ActorKind::Dispatch => "dispatch",
            ActorKind::Peer => "peer",
            ActorKind::CursorWriter => "cursor_writer",
            ActorKind::GroupCommit => "group_commit",
            ActorKind::Keeper => "keeper",
        }
    }
}

/// One actor type's readings.
#[derive(Debug, Default)]
pub struct ActorStats {
    pub live: AtomicU64,
    pub sent: AtomicU64,
    pub handled: AtomicU64,
    pub errors: AtomicU64,
    pub handling: Histogram,
}

impl ActorStats {
    pub fn started(&self) {
        self.live.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stopped(&self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }

    /// `n` messages were put in the actor type's mailboxes or queues.
    pub fn sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` messages were handled without being timed one by one (coalesced into one
    /// timed handling).
    pub fn count_handled(&self, n: u64) {
        self.handled.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` messages left a mailbox without being handled (the actor stopped first).
    pub fn dropped(&self, n: u64) {
        self.handled.fetch_add(n, Ordering::Relaxed);
    }

    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Messages sent and not yet handled, over every actor of the type.
    pub fn queue_depth(&self) -> u64 {
        let handled = self.handled.load(Ordering::Relaxed);
        self.sent.load(Ordering::Relaxed).saturating_sub(handled)
    }
}

/// Counts one handled message when dropped, and its handling time when timing is on.
pub struct Handling<'a> {
    stats: &'a ActorStats,
    start: Option<Instant>,
}

impl<'a> Handling<'a> {
    pub(super) fn new(stats: &'a ActorStats, timed: bool) -> Self {
        Self {
            stats,
            start: timed.then(Instant::now),
        }
    }
}

impl ActorStats {
    /// One message handled; its handling time too when it was timed from `start`.
    pub fn handled_since(&self, start: Option<Instant>) {
        self.handled.fetch_add(1, Ordering::Relaxed);
        if let Some(start) = start {
            self.handling.record(start.elapsed());
        }
    }
}

impl Drop for Handling<'_> {
    fn drop(&mut self) {
        self.stats.handled_since(self.start);
    }
}

/// The stages of a message's way from producer to socket. Each stage's histogram holds the
/// time from the message's arrival (request read and validated) to that stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The producer got its 2xx (once per message).
    Accepted,
    /// The store's append returned (once per message).
    Stored,
    /// Handed to the hub or to a peer's queue (once per recipient user).
    Dispatched,
    /// A peer node acknowledged it (once per recipient user on another node).
    Forwarded,
    /// Written to a session's socket (once per device): the latency users feel.
    Socket,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Stage::Accepted,
        Stage::Stored,
        Stage::Dispatched,
        Stage::Forwarded,
        Stage::Socket,
    ];

    /// The `stage` label value.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Accepted => "accepted",
            Stage::Stored => "stored",
            Stage::Dispatched => "dispatched",
            Stage::Forwarded => "forwarded",
            Stage::Socket => "socket",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_depth_is_sent_minus_handled_and_handling_is_timed_only_when_asked() {
        let s = ActorStats::default();
        s.sent(3);
        drop(Handling::new(&s, true));
        assert_eq!(s.queue_depth(), 2);
        assert_eq!(s.handling.snapshot().count(), 1);
        drop(Handling::new(&s, false));
        s.dropped(1);
        assert_eq!(s.queue_depth(), 0);
        assert_eq!(s.handling.snapshot().count(), 1);
        // More handled than sent (a message sent before counting began) reads as empty.
        drop(Handling::new(&s, false));
        assert_eq!(s.queue_depth(), 0);
    }
}
