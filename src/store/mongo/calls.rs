//! The plumbing every step of the MongoDB store shares: one driver call within a budget
//! (retrying transient failures), a raw write command's reply checked for errors, and
//! numbers read from either document representation.

use std::future::Future;
use std::time::Duration;

use mongodb::bson::{Document, RawBsonRef, RawDocument, RawDocumentBuf};
use tracing::debug;

use super::error::{is_transient, MongoError};
use crate::ids::Seq;

/// Attempts of one call on transient errors (the driver itself retries once more inside).
const MAX_ATTEMPTS: u32 = 3;
/// Pause before the second attempt; quadrupled before each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(25);

/// Runs one driver call within `budget`, retrying transient failures with backoff while
/// the budget lasts. The driver's own single retry happens inside each attempt.
pub(super) async fn call<T, F, Fut>(
    budget: Duration,
    op: &'static str,
    mut f: F,
) -> Result<T, MongoError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = mongodb::error::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + budget;
    let timeout = || MongoError::Timeout {
        op,
        ms: budget.as_millis() as u64,
    };
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match tokio::time::timeout_at(deadline, f()).await {
            Err(_) => return Err(timeout()),
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => {
                let room = tokio::time::Instant::now() + backoff < deadline;
                if attempt >= MAX_ATTEMPTS || !room || !is_transient(&e) {
                    return Err(MongoError::Driver { op, source: e });
                }
                debug!(op, attempt, error = %e.kind, "transient mongo error, retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 4;
            }
        }
    }
}

/// Fails on the write errors or write concern error of a raw write command's reply.
pub(super) fn check_write_reply(op: &'static str, reply: &Document) -> Result<(), MongoError> {
    let first = |field: &str| -> Option<(i32, String)> {
        let e = match reply.get(field)? {
            mongodb::bson::Bson::Array(a) => a.first()?.as_document()?,
            mongodb::bson::Bson::Document(d) => d,
            _ => return None,
        };
        Some((
            e.number("code").map_or(-1, |c| c as i32),
            e.get_str("errmsg").unwrap_or_default().to_string(),
        ))
    };
    match first("writeErrors").or_else(|| first("writeConcernError")) {
        Some((code, message)) => Err(MongoError::Write { op, code, message }),
        None => Ok(()),
    }
}

/// A seq stored as a BSON long (or int, or double from a hand edit).
pub(super) fn seq_field<D: AsRawOrDoc + ?Sized>(
    d: &D,
    key: &str,
    op: &'static str,
) -> Result<Seq, MongoError> {
    d.number(key)
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| MongoError::reply(op, format!("`{key}` is not a non-negative number")))
}

/// Reads an integer field from either document representation.
pub(super) trait AsRawOrDoc {
    fn number(&self, key: &str) -> Option<i64>;
}

impl AsRawOrDoc for RawDocument {
    fn number(&self, key: &str) -> Option<i64> {
        match self.get(key).ok()?? {
            RawBsonRef::Int64(n) => Some(n),
            RawBsonRef::Int32(n) => Some(n.into()),
            RawBsonRef::Double(f) if f.fract() == 0.0 => Some(f as i64),
            _ => None,
        }
    }
}

impl AsRawOrDoc for RawDocumentBuf {
    fn number(&self, key: &str) -> Option<i64> {
        self.as_ref().number(key)
    }
}

impl AsRawOrDoc for Document {
    fn number(&self, key: &str) -> Option<i64> {
        match self.get(key)? {
            mongodb::bson::Bson::Int64(n) => Some(*n),
            mongodb::bson::Bson::Int32(n) => Some((*n).into()),
            mongodb::bson::Bson::Double(f) if f.fract() == 0.0 => Some(*f as i64),
            _ => None,
        }
    }
}

/// A seq or count as a BSON long; Herald's seqs never come near `i64::MAX`.
pub(super) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
