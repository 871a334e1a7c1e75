//! The message store: where accepted messages live until delivered, expired or retired.
//!
//! [`MessageStore`] is the seam between ingestion/replay and the backend. `memory.rs` is the
//! embedded single-node default (bounded, not durable across restarts). A message is
//! accepted (202) only once `append` has returned for it.

pub mod memory;
pub mod mongo;
mod timed;

pub use self::timed::TimedStore;

use std::sync::Arc;

use async_trait::async_trait;
use bytestring::ByteString;
use serde_json::value::RawValue;

use crate::frames::Frame;
use crate::ids::{DeviceId, MessageId, Seq, UserId};

/// Who a new message goes to.
#[derive(Debug, Clone)]
pub enum Target {
    /// These users (deduplicated, validated).
    Users(Vec<UserId>),
    /// Every connected session, live only.
    Broadcast,
}

/// A validated message waiting to be stored.
#[derive(Debug)]
pub struct NewMessage {
    pub target: Target,
    pub topic: Option<String>,
    /// The payload exactly as the producer sent it (valid JSON).
    pub payload: Box<RawValue>,
    pub ttl_s: u64,
    pub idempotency_key: Option<String>,
    /// When it arrived at ingestion (unix µs, [`crate::metrics::now_us`]): live frames carry
    /// it to the socket for the pipeline latencies.
    pub arrived_us: u64,
}

/// One recipient user's copy of a stored message, ready to push.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub user: UserId,
    pub seq: Seq,
    /// The encoded frame shared by all of the user's sessions.
    pub frame: Frame,
}

/// The store's answer for one appended message.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub id: Arc<str>,
    pub recipients: usize,
    /// The idempotency key was seen before: `id` is the first message's, nothing is delivered.
    pub duplicate: bool,
    /// What to push (empty for duplicates and broadcasts).
    pub deliveries: Vec<Delivery>,
    /// The broadcast frame, for a new broadcast.
    pub broadcast: Option<ByteString>,
}

/// A page of a user's messages after some seq `after`, oldest first.
///
/// The contract sessions rely on (`actors/session/order.rs`): a seq after `after` that the
/// page passes over between two returned messages, or that is at or below `settled_upto`
/// without being returned, will never be delivered (expired, trimmed by retention, or
/// reserved by an append that failed). Every other seq may still arrive.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Messages with `seq > after`, at most `limit`, as frames.
    pub messages: Vec<(Seq, Frame)>,
    /// The user's newest seq handed out (0 when none); it may still be on its way in.
    pub last_seq: Seq,
    /// Oldest seq still retained; when it is above `after + 1`, older ones are gone.
    pub first_retained: Seq,
    /// Every seq up to here that the page does not return is settled: gone for good.
    pub settled_upto: Seq,
    /// The page stopped at `limit`: more messages may follow at once.
    pub more: bool,
    /// The page stopped before a seq that may still be stored (another node's append in
    /// flight) while later ones are stored: read again shortly.
    pub held_back: bool,
}

/// A device's ack position to persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorUpdate {
    pub user: UserId,
    pub device: DeviceId,
    pub seq: Seq,
}

/// One recipient's copy of a stored message, as [`MessageStore::locate`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageCopy {
    pub user: UserId,
    pub seq: Seq,
    /// Still retained and unexpired: a device resuming below `seq` would receive it.
    /// False for a copy the store still knows of but will not replay (expired, or trimmed
    /// by retention).
    pub stored: bool,
}

/// A device's stored ack cursor, as [`MessageStore::device_cursors`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCursor {
    pub user: UserId,
    pub device: DeviceId,
    /// Everything up to here is handled on the device.
    pub acked_seq: Seq,
}

/// Store failures; the text is for logs, callers answer 503 without echoing it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// Backend interface for messages, sequences and ack cursors.
#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Stores a batch, assigning ids and per-user seqs; all or nothing.
    async fn append(&self, batch: Vec<NewMessage>) -> Result<Vec<Accepted>, StoreError>;
    /// Messages of `user` with `seq > after`, oldest first, at most `limit`, unexpired.
    async fn read(&self, user: &UserId, after: Seq, limit: usize) -> Result<Page, StoreError>;
    /// The newest seq of `user` (0 when none).
    async fn last_seq(&self, user: &UserId) -> Result<Seq, StoreError>;
    /// The newest seq of each of `users` (0 when none), in order, in one round trip: the
    /// node's position check.
    async fn last_seqs(&self, users: &[UserId]) -> Result<Vec<Seq>, StoreError>;
    /// The stored ack cursor of a device, if any.
    async fn cursor(&self, user: &UserId, device: &DeviceId) -> Result<Option<Seq>, StoreError>;
    /// Moves cursors forward (never back).
    async fn save_cursors(&self, updates: Vec<CursorUpdate>) -> Result<(), StoreError>;
    /// Every per-user copy of message `id` the store still knows of, in no particular order;
    /// empty when it knows none (never stored, a broadcast, or every copy gone).
    async fn locate(&self, id: &MessageId) -> Result<Vec<MessageCopy>, StoreError>;
    /// The stored ack cursors of every device of `users`, in no particular order (acks not
    /// yet flushed by the cursor writer are not in it).
    async fn device_cursors(&self, users: &[UserId]) -> Result<Vec<DeviceCursor>, StoreError>;
    /// Reachability, for `/readyz`.
    async fn health(&self) -> Result<(), StoreError>;
    /// Short backend name for logs and stats.
    fn name(&self) -> &'static str;
}

/// A fresh, time-ordered message id.
pub fn new_message_id() -> Arc<str> {
    let mut text = uuid::Uuid::encode_buffer();
    Arc::from(&*uuid::Uuid::now_v7().hyphenated().encode_lower(&mut text))
}
