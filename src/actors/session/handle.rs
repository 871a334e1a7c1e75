//! How the hub reaches a session: [`SessionHandle`] offers frames without waiting and
//! reports a full mailbox, so the hub never blocks on a slow client. The message behind it
//! is private to the session module; broadcasts try the session's lane to its socket first
//! (`lane.rs`).

use std::sync::Arc;

use actix::prelude::*;
use bytestring::ByteString;

use super::lane;
pub use super::lane::Lane;
use super::outbound::Through;
use crate::frames::wire::Encoded;
use crate::frames::{CloseReason, Frame};
use crate::ids::{Seq, SessionId};
use crate::metrics::QueueGauge;

/// Hub -> session: something to write to the socket.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub(super) enum Push {
    /// A message of the session's user, in the user's seq order.
    Message { seq: Seq, frame: Frame },
    /// Broadcast frames (no seq), encoded once for every session.
    Broadcast(Encoded),
    /// The position check: the store's newest seq of the session's user.
    Position(Seq),
    /// Close the session with this reason.
    Close(CloseReason),
    /// Send this `reconnect` frame, then close with 1012 (the node drains).
    Restart(ByteString),
}

/// What became of a push offered to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// In the session's mailbox (the session counts it as delivered).
    Taken,
    /// Handed straight to the session's socket (the caller counts it as delivered).
    Written,
    /// The session's mailbox is full: it does not keep up.
    Full,
    /// The session has stopped.
    Gone,
}

/// How the hub reaches one session, without knowing the transport behind it. Pushes in
/// the session's mailbox are counted on its queue gauge (actix does not tell mailbox
/// lengths): offered here, taken by the session's handler.
#[derive(Clone)]
pub struct SessionHandle {
    pub(super) tx: Recipient<Push>,
    pub(super) gauge: Arc<QueueGauge>,
    pub(super) id: SessionId,
}

impl SessionHandle {
    fn offer(&self, push: Push) -> Offered {
        match self.tx.try_send(push) {
            Ok(()) => {
                self.gauge.offered();
                Offered::Taken
            }
            Err(SendError::Full(_)) => Offered::Full,
            Err(SendError::Closed(_)) => Offered::Gone,
        }
    }

    /// The session's lane to its socket, once, on the session's own thread (`None`
    /// elsewhere, or the second time).
    pub fn take_lane(&self) -> Option<Lane> {
        lane::take(self.id)
    }

    /// Offers a message of the session's user without waiting.
    pub fn offer_message(&self, seq: Seq, frame: Frame) -> Offered {
        self.offer(Push::Message { seq, frame })
    }

    /// Offers a batch of broadcast frames without waiting: written to the socket at once
    /// when nothing waits ahead of them on the session's thread, else through the mailbox.
    /// `lane`: the session's lane, taken with [`SessionHandle::take_lane`].
    pub fn offer_broadcast(&self, lane: Option<&Lane>, frames: &Encoded) -> Offered {
        match lane.map_or(Through::Busy, |l| l.offer(frames)) {
            Through::Written => Offered::Written,
            Through::Closing => Offered::Taken,
            Through::Busy => self.offer(Push::Broadcast(frames.clone())),
        }
    }

    /// Tells the session its user's newest stored seq, without waiting (a full mailbox
    /// just misses this check).
    pub fn offer_position(&self, last_seq: Seq) -> Offered {
        self.offer(Push::Position(last_seq))
    }

    /// Asks the session to close (queued even when its mailbox is full).
    pub fn close(&self, reason: CloseReason) {
        self.gauge.offered();
        self.tx.do_send(Push::Close(reason));
    }

    /// Asks the session to send `notice` (the drain's `reconnect` frame) and close with
    /// 1012 (queued even when its mailbox is full).
    pub fn restart(&self, notice: ByteString) {
        self.gauge.offered();
        self.tx.do_send(Push::Restart(notice));
    }
}
