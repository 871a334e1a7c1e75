//! [`TimedStore`]: wraps any [`MessageStore`] and records each call's latency and failures
//! under its operation name (`herald_store_op_seconds{op}`), so every backend is measured
//! the same way without instrumenting each one.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{
    Accepted, CursorUpdate, DeviceCursor, MessageCopy, MessageStore, NewMessage, Page, StoreError,
};
use crate::ids::{DeviceId, MessageId, Seq, UserId};
use crate::metrics::Counters;

/// A store whose calls are timed into the node's counters.
pub struct TimedStore {
    inner: Arc<dyn MessageStore>,
    counters: Arc<Counters>,
}

impl TimedStore {
    pub fn new(inner: Arc<dyn MessageStore>, counters: Arc<Counters>) -> Self {
        Self { inner, counters }
    }

    fn observe<T>(&self, op: &str, start: Instant, res: &Result<T, StoreError>) {
        self.counters
            .ops
            .store
            .op(op.as_bytes())
            .observe(start, res.is_ok());
    }
}

#[async_trait]
impl MessageStore for TimedStore {
    async fn append(&self, batch: Vec<NewMessage>) -> Result<Vec<Accepted>, StoreError> {
        let start = Instant::now();
        let res = self.inner.append(batch).await;
        self.observe("append", start, &res);
        res
    }

    async fn read(&self, user: &UserId, after: Seq, limit: usize) -> Result<Page, StoreError> {
        let start = Instant::now();
        let res = self.inner.read(user, after, limit).await;
        self.observe("read", start, &res);
        res
    }

    async fn last_seq(&self, user: &UserId) -> Result<Seq, StoreError> {
        let start = Instant::now();
        let res = self.inner.last_seq(user).await;
        self.observe("last_seq", start, &res);
        res
    }

    async fn last_seqs(&self, users: &[UserId]) -> Result<Vec<Seq>, StoreError> {
        let start = Instant::now();
        let res = self.inner.last_seqs(users).await;
        self.observe("last_seqs", start, &res);
        res
    }

    async fn cursor(&self, user: &UserId, device: &DeviceId) -> Result<Option<Seq>, StoreError> {
        let start = Instant::now();
        let res = self.inner.cursor(user, device).await;
        self.observe("cursor", start, &res);
        res
    }

    async fn save_cursors(&self, updates: Vec<CursorUpdate>) -> Result<(), StoreError> {
        let start = Instant::now();
        let res = self.inner.save_cursors(updates).await;
        self.observe("save_cursors", start, &res);
        res
    }

    async fn locate(&self, id: &MessageId) -> Result<Vec<MessageCopy>, StoreError> {
        let start = Instant::now();
        let res = self.inner.locate(id).await;
        self.observe("locate", start, &res);
        res
    }

    async fn device_cursors(&self, users: &[UserId]) -> Result<Vec<DeviceCursor>, StoreError> {
        let start = Instant::now();
        let res = self.inner.device_cursors(users).await;
        self.observe("device_cursors", start, &res);
        res
    }

    async fn health(&self) -> Result<(), StoreError> {
        let start = Instant::now();
        let res = self.inner.health().await;
        self.observe("health", start, &res);
        res
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }
}
