//! Every message exchanged between Herald's actors, each with the reason it exists.

use actix::prelude::*;
use bytestring::ByteString;

use crate::ids::{DeviceId, Seq, SessionId, UserId};
use crate::store::Delivery;

/// Why a session is being closed; each maps to one WebSocket close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// 1001: the node is draining; reconnect elsewhere.
    GoingAway,
    /// 4001: the token expired and was not refreshed.
    AuthExpired,
    /// 4002: the client does not read fast enough.
    SlowConsumer,
    /// 4003: a node limit or policy.
    Policy,
    /// 4008: no traffic from the client within the heartbeat timeout.
    HeartbeatTimeout,
    /// 1009: a client frame over the size limit.
    FrameTooBig,
    /// 1002: the client broke the WebSocket protocol.
    ProtocolError,
    /// 1000: the client closed.
    Normal,
}

impl CloseReason {
    /// The WebSocket close code.
    pub fn code(self) -> u16 {
        match self {
            CloseReason::GoingAway => 1001,
            CloseReason::AuthExpired => 4001,
            CloseReason::SlowConsumer => 4002,
            CloseReason::Policy => 4003,
            CloseReason::HeartbeatTimeout => 4008,
            CloseReason::FrameTooBig => 1009,
            CloseReason::ProtocolError => 1002,
            CloseReason::Normal => 1000,
        }
    }

    /// The close reason text (short: control frames carry at most 123 bytes of it).
    pub fn text(self) -> &'static str {
        match self {
            CloseReason::GoingAway => "server going away, reconnect",
            CloseReason::AuthExpired => "token expired",
            CloseReason::SlowConsumer => "slow consumer",
            CloseReason::Policy => "policy violation",
            CloseReason::HeartbeatTimeout => "heartbeat timeout",
            CloseReason::FrameTooBig => "frame too big",
            CloseReason::ProtocolError => "protocol error",
            CloseReason::Normal => "bye",
        }
    }
}

/// Hub -> session: something to write to the socket. The hub only knows sessions as
/// `Recipient<Push>`, so it does not depend on the transport.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub enum Push {
    /// A message of the session's user, in the user's seq order.
    Message { seq: Seq, frame: ByteString },
    /// A broadcast frame (no seq).
    Broadcast(ByteString),
    /// Close the session with this reason.
    Close(CloseReason),
}

/// Session -> hub: a session started and wants its user's messages. `bound` fires once
/// the user's route binding is written (at once on a single node): only then does the
/// session read the store, so any message stored after that read finds the route.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Join {
    pub user: UserId,
    pub device: DeviceId,
    pub session: SessionId,
    pub push: Recipient<Push>,
    pub bound: tokio::sync::oneshot::Sender<()>,
}

/// Session -> hub: a session stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub user: UserId,
    pub session: SessionId,
}

/// Dispatcher or internal endpoint -> hub: stored messages for users that may have sessions
/// here. Answers the users that have none (so a forwarding peer can drop a stale route).
#[derive(Message)]
#[rtype(result = "Vec<UserId>")]
pub struct Deliver(pub Vec<Delivery>);

/// Route keeper -> hub: these users' bindings expired or are overdue. The hub re-binds the
/// ones it still holds; with `unbind_absent`, it also removes bindings of the others.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Rebind {
    pub users: Vec<UserId>,
    pub unbind_absent: bool,
}

/// Route keeper -> hub: the route table lost its data (Redis restarted empty or came back);
/// bind every local user now instead of waiting for the next refresh.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RebindAll;

/// Dispatcher -> hub: a broadcast frame for every local session. `weight` is what the
/// sender added to `Counters::hub_backlog` for it (the sessions it will reach).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Broadcast {
    pub frame: ByteString,
    pub weight: u64,
}

impl Broadcast {
    /// A broadcast counted into the hub backlog (one unit per live session).
    pub fn counted(frame: ByteString, counters: &super::stats::Counters) -> Self {
        use super::stats::Counters;
        let weight = Counters::get(&counters.sessions_live).max(1);
        Counters::add(&counters.hub_backlog, weight);
        Broadcast { frame, weight }
    }
}

/// Counts a [`Deliver`] into the hub backlog before it is sent.
pub fn counted_deliver(items: Vec<Delivery>, counters: &super::stats::Counters) -> Deliver {
    super::stats::Counters::add(&counters.hub_backlog, items.len() as u64);
    Deliver(items)
}

/// One connected device, as presence reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DevicePresence {
    pub device: DeviceId,
    pub session: String,
    pub node: String,
    pub connected_at_ms: u64,
}

/// API -> hub: which devices of a user are connected here.
#[derive(Message)]
#[rtype(result = "Vec<DevicePresence>")]
pub struct Presence(pub UserId);

/// Server -> hub: close every session with 1001 and refuse new ones; answers with the
/// number of sessions that were asked to close.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Drain;

/// Anyone -> hub: counts for stats and drain progress.
#[derive(Message)]
#[rtype(result = "super::stats::HubStats")]
pub struct GetHubStats;

/// Session -> cursor writer: this device has handled everything up to `seq`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Ack {
    pub user: UserId,
    pub device: DeviceId,
    pub seq: Seq,
}

/// Session -> cursor writer: the device's resume point, including acks not yet written.
#[derive(Message)]
#[rtype(result = "Result<Option<Seq>, crate::store::StoreError>")]
pub struct GetCursor {
    pub user: UserId,
    pub device: DeviceId,
}

/// Server -> cursor writer: write everything pending now (drain).
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushCursors;
