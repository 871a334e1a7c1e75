//! Identity newtypes (`UserId`, `DeviceId`, `SessionId`, `NodeId`, `MessageId`, `Seq`) and
//! their validation.
//!
//! Everything that crosses the external contract is validated here once, so the rest of the
//! code can hold these types without re-checking them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::RefOr;

/// Longest user or device id accepted (DESIGN.md section 3).
pub const MAX_ID_LEN: usize = 128;

/// Why an id was refused; the message names the rule that was broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must be 1-128 characters")]
    Length,
    #[error("may only contain A-Z a-z 0-9 . _ : @ -")]
    Charset,
    #[error("must be a message id: a UUID of 36 characters, as POST /api/v1/messages returns it")]
    NotMessageId,
}

/// The characters an id may hold besides ASCII letters and digits. `-` comes last, so the
/// OpenAPI pattern can put them in a character class as they are.
const ID_PUNCTUATION: &str = "._:@-";

/// The OpenAPI schema of a string id: the rules [`check_id`] enforces, as a pattern.
fn id_schema(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_ID_LEN))
        .pattern(Some(format!("^[A-Za-z0-9{ID_PUNCTUATION}]+$")))
        .description(Some(description))
        .into()
}

fn check_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() || s.len() > MAX_ID_LEN {
        return Err(IdError::Length);
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || ID_PUNCTUATION.as_bytes().contains(&b))
    {
        return Err(IdError::Charset);
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[doc = $doc:literal])* $name:ident) => {
        $(#[doc = $doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates `s` against the id rules of the external contract.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                check_id(s)?;
                Ok(Self(Arc::from(s)))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The shared string behind the id (a clone is a reference count).
            pub fn shared(&self) -> Arc<str> {
                self.0.clone()
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                id_schema(concat!($($doc),*).trim())
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

string_id!(
    /// A user id: the JWT `sub` claim and the `to` of a message.
    UserId
);
string_id!(
    /// A device of a user; each device has its own ack cursor.
    DeviceId
);
string_id!(
    /// A cluster node's id, unique among live nodes.
    NodeId
);

impl DeviceId {
    /// The device used when a client names none.
    pub fn default_device() -> Self {
        Self(Arc::from("default"))
    }
}

/// A message id as Herald hands it out ([`crate::store::new_message_id`]): a UUID in its
/// hyphenated 36-character form, kept lowercase so it compares equal to the stored id
/// however the caller spelled its hex digits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MessageId(Arc<str>);

impl MessageId {
    /// Accepts exactly the hyphenated UUID form (any case); refuses every other spelling
    /// `uuid` would take (simple, braced, URN), which Herald never returns.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.len() != 36 {
            return Err(IdError::NotMessageId);
        }
        let uuid = uuid::Uuid::try_parse(s).map_err(|_| IdError::NotMessageId)?;
        Ok(Self(Arc::from(uuid.hyphenated().to_string())))
    }

    /// The id as a string slice (lowercase hyphenated UUID).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl utoipa::PartialSchema for MessageId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::Custom("uuid".into())))
            .min_length(Some(36))
            .max_length(Some(36))
            .description(Some(
                "A message id: a hyphenated UUID (v7, time-ordered) as `POST /api/v1/messages` \
                 returns it; any case of its hex digits is accepted.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for MessageId {}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({:?})", &*self.0)
    }
}

/// A per-user message sequence number; the first message of a user has seq 1.
pub type Seq = u64;

/// Largest seq a client may name as a resume point (`/ws?since=`): the MongoDB store keeps
/// seqs as signed 64-bit integers, so no seq is ever above it, and `since + 1` cannot
/// overflow anywhere downstream.
pub const MAX_SEQ: Seq = i64::MAX as u64;

/// Parses a client's resume point: a decimal integer in `0..=MAX_SEQ`.
pub fn parse_resume_seq(s: &str) -> Option<Seq> {
    s.parse::<Seq>().ok().filter(|n| *n <= MAX_SEQ)
}

/// Identifies one WebSocket session on this node.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl SessionId {
    /// A fresh id, unique within this process.
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        SessionId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{:x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_points_beyond_the_largest_storable_seq_are_refused() {
        assert_eq!(parse_resume_seq("0"), Some(0));
        assert_eq!(parse_resume_seq("9223372036854775807"), Some(MAX_SEQ));
        assert_eq!(parse_resume_seq("9223372036854775808"), None);
        assert_eq!(parse_resume_seq("18446744073709551615"), None);
        assert_eq!(parse_resume_seq("-1"), None);
        assert_eq!(parse_resume_seq("1e3"), None);
    }

    #[test]
    fn user_ids_follow_the_contract_charset_and_length() {
        assert!(UserId::parse("alice@example.com").is_ok());
        assert!(UserId::parse("a.b_c:d-e").is_ok());
        assert_eq!(UserId::parse(""), Err(IdError::Length));
        assert_eq!(UserId::parse(&"x".repeat(129)), Err(IdError::Length));
        assert!(UserId::parse(&"x".repeat(128)).is_ok());
        assert_eq!(UserId::parse("a b"), Err(IdError::Charset));
        assert_eq!(UserId::parse("a/b"), Err(IdError::Charset));
        assert_eq!(UserId::parse("é"), Err(IdError::Charset));
    }

    #[test]
    fn message_ids_are_hyphenated_uuids_read_in_any_case_and_kept_lowercase() {
        let id = "0192f4c8-7d1e-7a53-9c2b-6f1d2e3a4b5c";
        assert_eq!(MessageId::parse(id).unwrap().as_str(), id);
        let upper = MessageId::parse(&id.to_uppercase()).unwrap();
        assert_eq!(upper, MessageId::parse(id).unwrap());
        for bad in [
            "",
            "abc",
            "0192f4c87d1e7a539c2b6f1d2e3a4b5c",
            "{0192f4c8-7d1e-7a53-9c2b-6f1d2e3a4b5c}",
            "urn:uuid:0192f4c8-7d1e-7a53-9c2b-6f1d2e3a4b5c",
            "0192f4c8-7d1e-7a53-9c2b-6f1d2e3a4b5g",
            "0192f4c8+7d1e-7a53-9c2b-6f1d2e3a4b5c",
        ] {
            assert_eq!(MessageId::parse(bad), Err(IdError::NotMessageId), "{bad}");
        }
    }

    #[test]
    fn ids_round_trip_through_json_and_reject_invalid_ones() {
        let u: UserId = serde_json::from_str("\"bob\"").unwrap();
        assert_eq!(u.as_str(), "bob");
        assert_eq!(serde_json::to_string(&u).unwrap(), "\"bob\"");
        assert!(serde_json::from_str::<UserId>("\"b o b\"").is_err());
    }
}
