//! Group commit for ingestion: concurrent requests' messages go to the store together.
//!
//! Up to [`MAX_IN_FLIGHT`] appends are in flight at a time (a second one only for at least
//! [`OVERLAP_MIN_MESSAGES`] waiting messages); whatever requests arrive meanwhile are
//! coalesced into the next one (up to [`MAX_COMMIT_MESSAGES`]
//! messages; `batcher.rs` decides), so under load the store sees one round trip per batch of
//! requests instead of one per message, and an idle node adds no delay. Each request still
//! gets its own answer only once the append holding its messages returned.
//!
//! Two appends in flight let one batch's insert overlap the next one's seq reservation
//! (about half of an append's store time): the store and the node work at once instead of
//! in turn. The store answers overlapping appends in the order they reserved (the MongoDB
//! store's `turns.rs`), so each user's messages still reach dispatch in seq order; a store
//! that did not would still be correct (a session holds a push that comes ahead of its
//! seq and reads the gap from the store), only slower.

use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, oneshot};

use super::batcher::Batcher;

use crate::metrics::{ActorKind, Counters};
use crate::store::{Accepted, MessageStore, NewMessage, StoreError};

/// Most messages coalesced into one append.
pub const MAX_COMMIT_MESSAGES: usize = 2000;
/// Most appends in flight at once: one storing while the next reserves.
pub const MAX_IN_FLIGHT: usize = 2;
/// Fewest waiting messages for which a second append starts while one runs (a batch POST's
/// worth): smaller ones wait and join the next append (`batcher.rs`).
pub const OVERLAP_MIN_MESSAGES: usize = 100;

type Reply = oneshot::Sender<Result<Vec<Accepted>, StoreError>>;
/// A request's messages and where its answer goes.
type Request = (Vec<NewMessage>, Reply);

/// Hands messages to the store, directly (embedded store) or coalesced (remote store).
#[derive(Clone)]
pub enum Appender {
    /// Every call goes straight to the store (cheap in-process appends).
    Direct(Arc<dyn MessageStore>),
    /// Calls are queued to the group-commit task.
    Batched(mpsc::UnboundedSender<Request>, Arc<Counters>),
}

impl Appender {
    /// A group-commit appender; its task runs on the current runtime until every handle is
    /// dropped.
    pub fn batched(store: Arc<dyn MessageStore>, counters: Arc<Counters>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        actix_rt::spawn(run(store, rx, counters.clone()));
        Appender::Batched(tx, counters)
    }

    /// Stores `batch`; answers once it is durable (or failed, all of it).
    pub async fn append(&self, batch: Vec<NewMessage>) -> Result<Vec<Accepted>, StoreError> {
        match self {
            Appender::Direct(store) => store.append(batch).await,
            Appender::Batched(tx, counters) => {
                counters.actor(ActorKind::GroupCommit).sent(1);
                let (reply, answer) = oneshot::channel();
                tx.send((batch, reply))
                    .map_err(|_| StoreError::Unavailable("appender stopped".into()))?;
                answer
                    .await
                    .map_err(|_| StoreError::Unavailable("appender stopped".into()))?
            }
        }
    }
}

async fn run(
    store: Arc<dyn MessageStore>,
    mut rx: mpsc::UnboundedReceiver<Request>,
    counters: Arc<Counters>,
) {
    let stats = counters.actor(ActorKind::GroupCommit);
    stats.started();
    let mut batcher: Batcher<Request> =
        Batcher::new(MAX_IN_FLIGHT, OVERLAP_MIN_MESSAGES, MAX_COMMIT_MESSAGES);
    let mut in_flight = FuturesUnordered::new();
    let mut open = true;
    loop {
        while let Some(requests) = batcher.next_batch() {
            in_flight.push(commit(&*store, requests, &counters));
        }
        if !open && batcher.is_idle() {
            break;
        }
        tokio::select! {
            biased;
            Some(()) = in_flight.next(), if !in_flight.is_empty() => batcher.finished(),
            request = rx.recv(), if open => match request {
                Some(first) => {
                    let mut request = Some(first);
                    while let Some(req) = request {
                        batcher.push(req.0.len(), req);
                        request = rx.try_recv().ok();
                    }
                }
                None => open = false,
            },
            else => break,
        }
    }
    stats.stopped();
}

/// One append of the coalesced `requests`; answers each of them.
async fn commit(store: &dyn MessageStore, requests: Vec<(usize, Request)>, counters: &Counters) {
    let stats = counters.actor(ActorKind::GroupCommit);
    // One handling (timed) per commit; the other coalesced requests count as handled.
    let _timed = counters.handling(ActorKind::GroupCommit);
    stats.count_handled(requests.len() as u64 - 1);
    let total = requests.iter().map(|(n, _)| n).sum();
    let mut all = Vec::with_capacity(total);
    let mut shape = Vec::with_capacity(requests.len());
    for (n, (msgs, reply)) in requests {
        shape.push((n, reply));
        all.extend(msgs);
    }
    match store.append(all).await {
        Ok(accepted) => {
            let mut it = accepted.into_iter();
            for (n, reply) in shape {
                let _ = reply.send(Ok(it.by_ref().take(n).collect()));
            }
        }
        Err(e) => {
            stats.error();
            for (_, reply) in shape {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
