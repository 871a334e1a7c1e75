//! Background deletion of messages that fell out of a user's retention window.
//!
//! Reads already ignore seqs at or below `last_seq - max_messages_per_user`; this only frees
//! the space. An append reports each user's new seq block; when the block crosses a multiple
//! of a tenth of the limit the user's floor is queued, and one task per store drains the
//! queue with `delete` commands of up to [`TRIM_BATCH`] statements. The task is spawned on
//! the runtime of the append that found work, never awaited by it, and a failed delete is
//! only logged: the next crossing queues a higher floor that covers it.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mongodb::bson::{doc, Document, RawDocumentBuf};
use mongodb::Collection;
use tracing::{debug, warn};

use super::{call, check_write_reply, to_i64, AsRawOrDoc};
use crate::ids::{Seq, UserId};

/// Most per-user delete statements in one command.
const TRIM_BATCH: usize = 1000;

/// Queues and runs retention deletes; cheap to clone.
#[derive(Clone)]
pub struct Trimmer {
    inner: Arc<Inner>,
}

struct Inner {
    messages: Collection<RawDocumentBuf>,
    op_timeout: Duration,
    max_per_user: u64,
    /// A user's floor is queued when its seq crosses a multiple of this.
    every: u64,
    /// user -> highest seq to delete. A std mutex: nothing awaits while it is held.
    queue: Mutex<HashMap<UserId, Seq>>,
    /// A drain task is running.
    running: AtomicBool,
}

impl Trimmer {
    pub fn new(
        messages: Collection<RawDocumentBuf>,
        op_timeout: Duration,
        max_per_user: u64,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                messages,
                op_timeout,
                max_per_user,
                every: (max_per_user / 10).max(1),
                queue: Mutex::new(HashMap::new()),
                running: AtomicBool::new(false),
            }),
        }
    }

    /// An append gave `user` the seqs `first..=last`.
    pub fn note(&self, user: &UserId, first: Seq, last: Seq) {
        let i = &self.inner;
        if last <= i.max_per_user || (first - 1) / i.every == last / i.every {
            return;
        }
        let floor = last - i.max_per_user;
        let mut q = i.queue.lock().unwrap_or_else(|p| p.into_inner());
        let e = q.entry(user.clone()).or_insert(floor);
        *e = (*e).max(floor);
    }

    /// Starts the drain task if work is queued and none runs.
    pub fn kick(&self) {
        if self.is_queue_empty() || self.inner.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move { this.drain().await });
    }

    fn is_queue_empty(&self) -> bool {
        let q = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.is_empty()
    }

    fn take_batch(&self) -> Vec<(UserId, Seq)> {
        let mut q = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
        let users: Vec<UserId> = q.keys().take(TRIM_BATCH).cloned().collect();
        users
            .into_iter()
            .filter_map(|u| q.remove_entry(&u))
            .collect()
    }

    async fn drain(self) {
        /// Clears `running` however the task ends (also when its runtime shuts down).
        struct Running(Arc<Inner>);
        impl Drop for Running {
            fn drop(&mut self) {
                self.0.running.store(false, Ordering::Release);
            }
        }
        let mut guard = Some(Running(self.inner.clone()));
        loop {
            let batch = self.take_batch();
            if batch.is_empty() {
                drop(guard.take());
                // Work queued between the last take and the flag clear must not wait for
                // the next append: take the flag back and go on.
                if self.is_queue_empty() || self.inner.running.swap(true, Ordering::AcqRel) {
                    return;
                }
                guard = Some(Running(self.inner.clone()));
                continue;
            }
            if let Err(err) = self.delete(&batch).await {
                warn!(error = %err, users = batch.len(), "retention delete failed; a later append retries it");
            }
        }
    }

    async fn delete(&self, batch: &[(UserId, Seq)]) -> Result<(), super::MongoError> {
        let deletes: Vec<Document> = batch
            .iter()
            .map(|(user, floor)| {
                doc! {"q": {"user": user.as_str(), "seq": {"$lte": to_i64(*floor)}}, "limit": 0}
            })
            .collect();
        // w: 1 is enough: losing a retention delete in a failover only delays the space.
        let cmd = doc! {
            "delete": self.inner.messages.name(),
            "deletes": deletes,
            "ordered": false,
            "writeConcern": {"w": 1},
        };
        let db = self
            .inner
            .messages
            .client()
            .database(&self.inner.messages.namespace().db);
        let reply = call(self.inner.op_timeout, "retention delete", || {
            db.run_command(cmd.clone()).into_future()
        })
        .await?;
        check_write_reply("retention delete", &reply)?;
        debug!(
            users = batch.len(),
            deleted = reply.number("n").unwrap_or(0),
            "retention delete"
        );
        Ok(())
    }
}
