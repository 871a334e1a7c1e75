//! A message's way in: validate, admit (hub backlog), append with group commit (where the
//! store enforces idempotency keys), count, and hand off to dispatch. The REST handlers only
//! parse the request and answer; everything in between is [`Ingest`].
//!
//! A message is accepted only once the store returned for it; dispatch happens after that
//! and never fails the request (a message that cannot be pushed now is replayed on the
//! device's next connection).

pub mod commit;
pub mod validate;

use std::sync::Arc;

use serde_json::value::RawValue;

use self::commit::Appender;
use crate::actors::dispatch::DispatchHandle;
use crate::actors::hub::HubHandle;
use crate::config::IngestConfig;
use crate::metrics::Counters;
use crate::store::{Accepted, StoreError};

/// Why ingestion refused something.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError {
    /// The input is invalid (400); `code` and `message` are what the producer sees.
    #[error("{code}: {message}")]
    Invalid { code: &'static str, message: String },
    /// The message's copies would take more memory than `ingest.max_fanout_bytes` (413).
    #[error("{0}")]
    TooLarge(String),
    /// The hub is too far behind on delivery; nothing was accepted (429).
    #[error("the node is behind on delivery; nothing was accepted, retry shortly")]
    Overloaded,
    /// The store did not accept the batch; nothing was accepted (503).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IngestError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        IngestError::Invalid {
            code,
            message: message.into(),
        }
    }
}

/// A store that answered fewer results than messages appended (a backend bug): refused
/// rather than trusted.
fn short_answer() -> IngestError {
    IngestError::Store(StoreError::Unavailable(
        "store answered fewer results than messages".into(),
    ))
}

/// One item of a batch: accepted, or refused on its own.
pub type ItemResult = Result<Accepted, IngestError>;

/// The ingestion service shared by the REST handlers.
pub struct Ingest {
    cfg: IngestConfig,
    appender: Appender,
    hub: HubHandle,
    dispatch: DispatchHandle,
    counters: Arc<Counters>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchIn<'a> {
    #[serde(borrow)]
    messages: Vec<&'a RawValue>,
}

impl Ingest {
    pub fn new(
        cfg: IngestConfig,
        appender: Appender,
        hub: HubHandle,
        dispatch: DispatchHandle,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            cfg,
            appender,
            hub,
            dispatch,
            counters,
        }
    }

    /// The request size limit, bytes.
    pub fn max_body_bytes(&self) -> usize {
        self.cfg.max_body_bytes
    }

    /// Refuses new messages while the hub is more than `ingest.max_hub_backlog` behind;
    /// cheap, so handlers call it before reading a body.
    pub fn admit(&self) -> Result<(), IngestError> {
        if self.hub.backlog() > self.cfg.max_hub_backlog {
            Counters::add(&self.counters.overloaded, 1);
            return Err(IngestError::Overloaded);
        }
        Ok(())
    }

    /// Validates, stores and dispatches one message body.
    pub async fn one(&self, body: &str) -> Result<Accepted, IngestError> {
        let msg = validate::message(body, &self.cfg)?;
        let mut accepted = self.appender.append(vec![msg]).await?;
        self.accepted(&mut accepted);
        accepted.pop().ok_or_else(short_answer)
    }

    /// Validates a batch body, stores every valid item in one append and dispatches them.
    /// Results are in request order; invalid items are refused alone, a store failure
    /// refuses the whole batch (nothing accepted).
    pub async fn batch(&self, body: &str) -> Result<Vec<ItemResult>, IngestError> {
        let batch: BatchIn = validate::parse_json(body)?;
        if batch.messages.is_empty() {
            return Err(validate::invalid("messages", "must not be empty"));
        }
        if batch.messages.len() > self.cfg.max_batch {
            return Err(validate::invalid(
                "messages",
                format!("at most {} messages per batch", self.cfg.max_batch),
            ));
        }
        let mut slots: Vec<Result<(), IngestError>> = Vec::with_capacity(batch.messages.len());
        let mut valid = Vec::new();
        for (i, raw) in batch.messages.iter().enumerate() {
            match validate::message(raw.get(), &self.cfg) {
                Ok(m) => {
                    slots.push(Ok(()));
                    valid.push(m);
                }
                Err(IngestError::Invalid { code, message }) => {
                    slots.push(Err(IngestError::Invalid {
                        code,
                        message: format!("messages[{i}].{message}"),
                    }))
                }
                Err(e) => slots.push(Err(e)),
            }
        }
        let cost = valid.iter().fold(0usize, |sum, m| {
            sum.saturating_add(validate::fanout_bytes(m.payload.get().len(), &m.target))
        });
        if cost > self.cfg.max_fanout_bytes {
            return Err(IngestError::TooLarge(format!(
                "the batch's payload bytes x recipients total {cost}, over {} \
                 (ingest.max_fanout_bytes); split it into smaller batches",
                self.cfg.max_fanout_bytes
            )));
        }
        let mut accepted = if valid.is_empty() {
            Vec::new()
        } else {
            self.appender.append(valid).await?
        };
        self.accepted(&mut accepted);
        // The store answers in message order, so valid items take its answers in turn.
        let mut answers = accepted.into_iter();
        Ok(slots
            .into_iter()
            .map(|slot| slot.and_then(|()| answers.next().ok_or_else(short_answer)))
            .collect())
    }

    /// Counts what the store accepted and hands it to dispatch.
    fn accepted(&self, accepted: &mut [Accepted]) {
        let dup = accepted.iter().filter(|a| a.duplicate).count() as u64;
        Counters::add(&self.counters.accepted, accepted.len() as u64 - dup);
        Counters::add(&self.counters.duplicates, dup);
        self.dispatch.dispatch(accepted);
    }
}
