//! A message's way in: validate, admit (hub backlog), append with group commit (where the
//! store enforces idempotency keys), count, and hand off to dispatch. The REST handlers only
//! parse the request and answer; everything in between is [`Ingest`].
//!
//! A message is accepted only once the store returned for it; dispatch happens after that
//! and never fails the request (a message that cannot be pushed now is replayed on the
//! device's next connection).

mod batcher;
pub mod commit;
pub mod validate;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use self::commit::Appender;
use crate::actors::dispatch::DispatchHandle;
use crate::actors::hub::HubHandle;
use crate::config::IngestConfig;
use crate::limits::{retry_after_secs, RateLimiter};
use crate::metrics::{Counters, Stage};
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
    /// The API key sent more requests or messages than its rate allows; nothing was
    /// accepted (429, `Retry-After` in whole seconds).
    #[error("{what} over this API key's rate ({key_setting}); nothing was accepted, retry in {retry_after_s} s")]
    RateLimited {
        what: &'static str,
        key_setting: &'static str,
        retry_after_s: u64,
    },
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
    /// Requests per API key (by its index in `auth.api_keys`).
    key_requests: RateLimiter<usize>,
    /// Messages per API key.
    key_messages: RateLimiter<usize>,
    appender: Appender,
    hub: HubHandle,
    dispatch: DispatchHandle,
    counters: Arc<Counters>,
}

/// A batch as producers send it; each item is validated on its own.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchIn<'a> {
    /// 1-`ingest.max_batch` messages.
    #[serde(borrow)]
    #[schema(value_type = Vec<validate::MessageIn>, min_items = 1)]
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
        let per_key = |rate: u32| RateLimiter::new(f64::from(rate), f64::from(rate), 4096);
        Self {
            key_requests: per_key(cfg.key_requests_per_s),
            key_messages: per_key(cfg.key_messages_per_s),
            cfg,
            appender,
            hub,
            dispatch,
            counters,
        }
    }

    /// How long a request body may take to arrive.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.body_timeout_ms)
    }

    /// Takes `n` from `limiter` for API key `key`, or says when to retry.
    fn rate(
        &self,
        limiter: &RateLimiter<usize>,
        key: usize,
        n: u64,
        what: &'static str,
        key_setting: &'static str,
    ) -> Result<(), IngestError> {
        limiter.check(&key, n, Instant::now()).map_err(|wait| {
            Counters::add(&self.counters.requests_rate_limited, 1);
            IngestError::RateLimited {
                what,
                key_setting,
                retry_after_s: retry_after_secs(wait),
            }
        })
    }

    /// The request size limit, bytes.
    pub fn max_body_bytes(&self) -> usize {
        self.cfg.max_body_bytes
    }

    /// Refuses new messages while the hub is more than `ingest.max_hub_backlog` behind;
    /// cheap, so handlers call it before reading a body.
    pub fn admit(&self, key: usize) -> Result<(), IngestError> {
        if self.hub.backlog() > self.cfg.max_hub_backlog {
            Counters::add(&self.counters.overloaded, 1);
            return Err(IngestError::Overloaded);
        }
        let setting = "ingest.key_requests_per_s";
        self.rate(&self.key_requests, key, 1, "requests", setting)
    }

    /// Validates, stores and dispatches one message body.
    pub async fn one(&self, key: usize, body: &str) -> Result<Accepted, IngestError> {
        let msg = validate::message(body, &self.cfg).inspect_err(|e| self.count_refused(e))?;
        let setting = "ingest.key_messages_per_s";
        self.rate(&self.key_messages, key, 1, "messages", setting)?;
        let arrived_us = msg.arrived_us;
        let mut accepted = self.appender.append(vec![msg]).await?;
        self.accepted(&mut accepted, arrived_us);
        accepted.pop().ok_or_else(short_answer)
    }

    /// Validates a batch body, stores every valid item in one append and dispatches them.
    /// Results are in request order; invalid items are refused alone, a store failure
    /// refuses the whole batch (nothing accepted).
    pub async fn batch(&self, key: usize, body: &str) -> Result<Vec<ItemResult>, IngestError> {
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
            match validate::message(raw.get(), &self.cfg).inspect_err(|e| self.count_refused(e)) {
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
            Counters::add(&self.counters.fanout_refused, 1);
            return Err(IngestError::TooLarge(format!(
                "the batch's payload bytes x recipients total {cost}, over {} \
                 (ingest.max_fanout_bytes); split it into smaller batches",
                self.cfg.max_fanout_bytes
            )));
        }
        let setting = "ingest.key_messages_per_s";
        self.rate(
            &self.key_messages,
            key,
            valid.len() as u64,
            "messages",
            setting,
        )?;
        let arrived_us = valid.first().map_or(0, |m| m.arrived_us);
        let mut accepted = if valid.is_empty() {
            Vec::new()
        } else {
            self.appender.append(valid).await?
        };
        self.accepted(&mut accepted, arrived_us);
        // The store answers in message order, so valid items take its answers in turn.
        let mut answers = accepted.into_iter();
        Ok(slots
            .into_iter()
            .map(|slot| slot.and_then(|()| answers.next().ok_or_else(short_answer)))
            .collect())
    }

    /// Counts refusals that a limit (not a malformed field) caused.
    fn count_refused(&self, e: &IngestError) {
        match e {
            IngestError::TooLarge(_) => Counters::add(&self.counters.fanout_refused, 1),
            IngestError::Invalid {
                code: "payload_too_deep",
                ..
            } => Counters::add(&self.counters.payload_too_deep, 1),
            _ => {}
        }
    }

    /// Counts what the store accepted (and its pipeline stages, for messages that arrived
    /// at `arrived_us`) and hands it to dispatch.
    fn accepted(&self, accepted: &mut [Accepted], arrived_us: u64) {
        let dup = accepted.iter().filter(|a| a.duplicate).count() as u64;
        let new = accepted.len() as u64 - dup;
        Counters::add(&self.counters.accepted, new);
        Counters::add(&self.counters.duplicates, dup);
        for _ in 0..new {
            self.counters.stage(Stage::Stored, arrived_us);
        }
        self.dispatch.dispatch(accepted);
        for _ in 0..new {
            self.counters.stage(Stage::Accepted, arrived_us);
        }
    }
}
