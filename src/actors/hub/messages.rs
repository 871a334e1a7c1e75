//! The hub's messages, private to the hub module: what [`HubHandle`](super::HubHandle)
//! sends its shards.

use actix::prelude::*;
use bytestring::ByteString;
use tokio::sync::oneshot;

use super::{DevicePresence, DrainPolicy, HubStats};
use crate::actors::session::SessionHandle;
use crate::ids::{DeviceId, Seq, SessionId, UserId};
use crate::store::Delivery;

/// A session started and wants its user's messages; `bound` fires once the user's binding
/// is written (at once on a single node): only then does the session read the store, so any
/// message stored after that read finds the binding.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Join {
    pub(super) user: UserId,
    pub(super) device: DeviceId,
    pub(super) session: SessionId,
    pub(super) handle: SessionHandle,
    pub(super) bound: oneshot::Sender<()>,
}

/// A session stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Leave {
    pub(super) user: UserId,
    pub(super) session: SessionId,
}

/// Stored messages for users that may have sessions here; answers the users that have none
/// (so a forwarding peer can drop a stale binding).
#[derive(Message)]
#[rtype(result = "Vec<UserId>")]
pub(super) struct Deliver(pub(super) Vec<Delivery>);

/// A broadcast frame for every local session; `weight` is what was added to the backlog.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Broadcast {
    pub(super) frame: ByteString,
    pub(super) weight: u64,
}

/// These users' bindings expired or are overdue: re-bind the ones still held here; with
/// `unbind_absent`, also remove the bindings of the others.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Rebind {
    pub(super) users: Vec<UserId>,
    pub(super) unbind_absent: bool,
}

/// The binding table lost its data (Redis restarted empty or came back): bind every local
/// user now instead of waiting for the next refresh.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct RebindAll;

/// Which devices of a user are connected here.
#[derive(Message)]
#[rtype(result = "Vec<DevicePresence>")]
pub(super) struct Presence(pub(super) UserId);

/// Every user with a session here.
#[derive(Message)]
#[rtype(result = "Vec<UserId>")]
pub(super) struct LocalUsers;

/// The position check's answer: `seqs[i]` is the newest stored seq of `users[i]`.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Positions {
    pub(super) users: Vec<UserId>,
    pub(super) seqs: Vec<Seq>,
}

/// Refuse new sessions and tell every session to reconnect (1012), spread as the policy
/// says; answers how many sessions there were.
#[derive(Message)]
#[rtype(result = "usize")]
pub(super) struct Drain(pub(super) DrainPolicy);

/// Counts for stats and drain progress.
#[derive(Message)]
#[rtype(result = "HubStats")]
pub(super) struct GetStats;
