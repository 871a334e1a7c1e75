//! Group commit for ingestion: concurrent requests' messages go to the store together.
//!
//! One append is in flight at a time; whatever requests arrive meanwhile are coalesced into
//! the next one (up to [`MAX_COMMIT_MESSAGES`] messages), so under load the store sees one round trip
//! per batch of requests instead of one per message, and an idle node adds no delay. Each
//! request still gets its own answer only once the append holding its messages returned.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::metrics::{ActorKind, Counters};
use crate::store::{Accepted, MessageStore, NewMessage, StoreError};

/// Most messages coalesced into one append.
pub const MAX_COMMIT_MESSAGES: usize = 2000;

type Reply = oneshot::Sender<Result<Vec<Accepted>, StoreError>>;

/// Hands messages to the store, directly (embedded store) or coalesced (remote store).
#[derive(Clone)]
pub enum Appender {
    /// Every call goes straight to the store (cheap in-process appends).
    Direct(Arc<dyn MessageStore>),
    /// Calls are queued to the group-commit task.
    Batched(
        mpsc::UnboundedSender<(Vec<NewMessage>, Reply)>,
        Arc<Counters>,
    ),
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
    mut rx: mpsc::UnboundedReceiver<(Vec<NewMessage>, Reply)>,
    counters: Arc<Counters>,
) {
    let stats = counters.actor(ActorKind::GroupCommit);
    stats.started();
    while let Some(first) = rx.recv().await {
        // One handling (timed) per commit; the other coalesced requests count as handled.
        let _timed = counters.handling(ActorKind::GroupCommit);
        let mut requests = vec![first];
        let mut total = requests[0].0.len();
        while total < MAX_COMMIT_MESSAGES {
            match rx.try_recv() {
                Ok(req) => {
                    total += req.0.len();
                    requests.push(req);
                }
                Err(_) => break,
            }
        }
        stats.count_handled(requests.len() as u64 - 1);
        let mut all = Vec::with_capacity(total);
        let mut shape = Vec::with_capacity(requests.len());
        for (msgs, reply) in requests {
            shape.push((msgs.len(), reply));
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
    stats.stopped();
}
