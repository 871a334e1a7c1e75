//! The MongoDB store's failures, which of them are worth retrying, and their one mapping
//! into [`StoreError`]. Driver text goes into the log line only; callers answer 503.

use mongodb::error::{Error as DriverError, ErrorKind, RETRYABLE_ERROR, RETRYABLE_WRITE_ERROR};

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
