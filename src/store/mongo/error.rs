//! The MongoDB store's failures, which of them are worth retrying, and their one mapping
//! into [`StoreError`]. Driver text goes into the log line only; callers answer 503.

use mongodb::bson::{Bson, Document};
use mongodb::error::{Error as DriverError, ErrorKind, RETRYABLE_ERROR, RETRYABLE_WRITE_ERROR};

use super::AsRawOrDoc;
use crate::store::StoreError;

/// MongoDB's duplicate key error code.
pub const DUPLICATE_KEY: i32 = 11000;

/// Server error codes after which the same call may succeed on a retry: the node stepped
/// down, is shutting down or recovering, or the call hit a transient resource limit. The
/// driver's list for retryable reads.
const TRANSIENT_CODES: [i32; 13] = [
    11600, 11602, 10107, 13435, 13436, 189, 91, 7, 6, 89, 9001, 134, 262,
];

/// Why a MongoDB store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MongoError {
    /// The driver or the server refused the call.
    #[error("mongo {op} failed: {}", .source.kind)]
    Driver {
        op: &'static str,
        #[source]
        source: DriverError,
    },
    /// No answer within the budget (server unreachable, overloaded, or a network partition).
    #[error("mongo {op}: no answer within {ms} ms")]
    Timeout { op: &'static str, ms: u64 },
    /// A raw write command answered with write errors or a write concern error.
    #[error("mongo {op}: write error {code}: {message}")]
    Write {
        op: &'static str,
        code: i32,
        message: String,
    },
    /// A reply did not have the shape Herald wrote.
    #[error("mongo {op}: unexpected reply: {what}")]
    Reply { op: &'static str, what: String },
    /// A (user, seq) pair was already taken by another message: the user's counter was behind
    /// the stored messages (e.g. restored from an older backup). It has been moved forward; a
    /// retry succeeds.
    #[error("seq counter of user {user} was behind its stored messages; repaired, retry")]
    SeqConflict { user: String },
    /// An idempotency key kept changing hands while this append tried to claim it.
    #[error("idempotency key {key:?} is contended; retry")]
    ClaimContended { key: String },
    /// The configuration cannot work; names the key.
    #[error("invalid config `{key}`: {reason}")]
    Config { key: &'static str, reason: String },
}

impl MongoError {
    pub fn driver(op: &'static str) -> impl FnOnce(DriverError) -> MongoError {
        move |source| MongoError::Driver { op, source }
    }

    pub fn reply(op: &'static str, what: impl Into<String>) -> MongoError {
        MongoError::Reply {
            op,
            what: what.into(),
        }
    }
}

impl From<MongoError> for StoreError {
    fn from(e: MongoError) -> StoreError {
        StoreError::Unavailable(e.to_string())
    }
}

/// Whether repeating the same call may succeed: network errors, a primary stepping down,
/// or an error the server or driver labelled retryable. Not server selection failures: the
/// driver already waited its whole selection timeout for those.
pub fn is_transient(e: &DriverError) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } => true,
        ErrorKind::Command(c) if TRANSIENT_CODES.contains(&c.code) => true,
        ErrorKind::ServerSelection { .. } => false,
        _ => e.contains_label(RETRYABLE_WRITE_ERROR) || e.contains_label(RETRYABLE_ERROR),
    }
}

/// Indices of the documents an `insert_many` refused as duplicates, when every write error
/// is a duplicate key and the write concern was met; `None` for any other failure.
pub fn duplicate_indices(e: &DriverError) -> Option<Vec<usize>> {
    match e.kind.as_ref() {
        ErrorKind::InsertMany(f) if f.write_concern_error.is_none() => {
            let errors = f.write_errors.as_ref()?;
            errors
                .iter()
                .map(|w| (w.code == DUPLICATE_KEY).then_some(w.index))
                .collect()
        }
        _ => None,
    }
}

/// Whether an error is a single duplicate key (an upsert that raced another one).
pub fn is_duplicate_key(e: &DriverError) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// Indices of the statements a raw write command's reply refused as duplicate keys (for
/// an upsert whose query did not match: its insert collided); any other write error, or a
/// write concern error, is the error.
pub fn duplicate_statements(op: &'static str, reply: &Document) -> Result<Vec<usize>, MongoError> {
    if let Ok(wce) = reply.get_document("writeConcernError") {
        return Err(write_error(op, wce));
    }
    let Some(errors) = reply.get("writeErrors") else {
        return Ok(Vec::new());
    };
    let Bson::Array(errors) = errors else {
        return Err(MongoError::reply(op, "writeErrors is not an array"));
    };
    let mut dups = Vec::with_capacity(errors.len());
    for e in errors {
        let e = e
            .as_document()
            .ok_or_else(|| MongoError::reply(op, "a write error is not a document"))?;
        let code = AsRawOrDoc::number(e, "code");
        let index = AsRawOrDoc::number(e, "index").and_then(|i| usize::try_from(i).ok());
        match (code, index) {
            (Some(c), Some(i)) if c == i64::from(DUPLICATE_KEY) => dups.push(i),
            _ => return Err(write_error(op, e)),
        }
    }
    Ok(dups)
}

fn write_error(op: &'static str, e: &Document) -> MongoError {
    MongoError::Write {
        op,
        code: AsRawOrDoc::number(e, "code").map_or(-1, |c| c as i32),
        message: e.get_str("errmsg").unwrap_or_default().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;

    #[test]
    fn duplicate_keys_in_the_reply_are_the_duplicate_statements() {
        let reply = doc! {
            "ok": 1.0, "n": 3,
            "writeErrors": [
                {"index": 1, "code": 11000, "errmsg": "E11000 duplicate key"},
                {"index": 4_i64, "code": 11000, "errmsg": "E11000 duplicate key"},
            ],
        };
        assert_eq!(duplicate_statements("t", &reply).unwrap(), [1, 4]);
        assert!(duplicate_statements("t", &doc! {"ok": 1.0, "n": 2})
            .unwrap()
            .is_empty());
    }

    #[test]
    fn any_other_write_error_or_a_write_concern_error_is_an_error() {
        let other = doc! {
            "ok": 1.0,
            "writeErrors": [
                {"index": 0, "code": 11000, "errmsg": "dup"},
                {"index": 1, "code": 2, "errmsg": "bad value"},
            ],
        };
        assert!(matches!(
            duplicate_statements("t", &other),
            Err(MongoError::Write { code: 2, .. })
        ));
        let wce = doc! {"ok": 1.0, "writeConcernError": {"code": 64, "errmsg": "timeout"}};
        assert!(matches!(
            duplicate_statements("t", &wce),
            Err(MongoError::Write { code: 64, .. })
        ));
    }
}
