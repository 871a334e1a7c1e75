//! Validation of producer input: strict JSON parsing that names the field at fault, and one
//! message body into a [`NewMessage`]. Plain functions; every refusal is an
//! [`IngestError::Invalid`] with the code and message the API answers.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::value::RawValue;
use utoipa::openapi::schema::{
    ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use super::IngestError;
use crate::config::IngestConfig;
use crate::ids::UserId;
use crate::store::{NewMessage, Target};

/// Longest topic accepted, characters.
pub const MAX_TOPIC_LEN: usize = 128;
/// Longest idempotency key accepted, bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;
/// Bytes a message frame adds around its payload (type, id, seq, ts, topic), roughly.
pub const FRAME_OVERHEAD: usize = 160;

/// One message as producers send it: `to` or `broadcast: true`, and a `payload`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageIn {
    /// A user id, or a non-empty list of at most `ingest.max_recipients` user ids
    /// (repeated ids count once). Give either `to` or `broadcast: true`.
    #[serde(default)]
    #[schema(value_type = Option<Recipients>)]
    to: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(schema_with = broadcast_schema)]
    broadcast: Option<bool>,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128)]
    topic: Option<String>,
    /// Any JSON value (`null` included), delivered byte for byte.
    #[schema(value_type = serde_json::Value)]
    payload: Box<RawValue>,
    /// Seconds the message is kept for replay: 1-`ingest.max_ttl_s`; default
    /// `ingest.default_ttl_s`. Written as an integer (`60`, not `60.0`).
    #[serde(default)]
    #[schema(minimum = 1)]
    ttl_s: Option<i64>,
    /// 1-256 bytes: a request with a key already used answers the first message again.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256)]
    idempotency_key: Option<String>,
}

/// The schema of `to` for the OpenAPI document: [`target`] reads `to` as JSON itself, to
/// name the item at fault.
pub struct Recipients;

impl PartialSchema for Recipients {
    fn schema() -> RefOr<Schema> {
        let user = || Ref::from_schema_name(UserId::name());
        OneOfBuilder::new()
            .item(user())
            .item(ArrayBuilder::new().items(user()).min_items(Some(1)))
            .description(Some("One user id, or a non-empty list of user ids."))
            .into()
    }
}

impl ToSchema for Recipients {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((UserId::name().into(), UserId::schema()));
    }
}

/// The schema of `broadcast`: `true` or, like every optional field, `null` for absent
/// ([`target`] refuses `false`).
fn broadcast_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Boolean, Type::Null]))
        .enum_values(Some([Some(true), None]))
        .description(Some(
            "`true`: push to every connected session instead (live only, never stored).",
        ))
        .into()
}

fn broadcast_true() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([true]))
}

/// The rule [`target`] enforces, as a schema the OpenAPI document adds to [`MessageIn`]'s
/// (a derived schema cannot say it): exactly one of a non-null `to` and `broadcast: true`.
pub fn target_rule() -> Schema {
    let to = Ref::from_schema_name(Recipients::name());
    OneOfBuilder::new()
        .item(ObjectBuilder::new().required("to").property("to", to))
        .item(
            ObjectBuilder::new()
                .required("broadcast")
                .property("broadcast", broadcast_true()),
        )
        .into()
}

/// Parses JSON, naming the field at fault (`ttl_s: invalid type …`) when the shape is wrong.
///
/// A body that parses is read once, without tracking where the reader is (the tracking
/// keeps every key it passes, an allocation each); only a body that fails is read again,
/// tracked, to name the place.
pub fn parse_json<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, IngestError> {
    if let Ok(value) = serde_json::from_str(text) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let code = if inner.is_syntax() || inner.is_eof() {
            "invalid_json"
        } else {
            "invalid_body"
        };
        let place = if path == "." {
            "body".to_string()
        } else {
            path
        };
        IngestError::invalid(code, format!("{place}: {inner}"))
    })?;
    de.end()
        .map_err(|e| IngestError::invalid("invalid_json", format!("body: {e}")))?;
    Ok(value)
}

/// A 400 `invalid_field` naming `field`.
pub fn invalid(field: &str, why: impl std::fmt::Display) -> IngestError {
    IngestError::invalid("invalid_field", format!("{field}: {why}"))
}

fn parse_user(field: &str, v: &serde_json::Value) -> Result<UserId, IngestError> {
    let s = v
        .as_str()
        .ok_or_else(|| invalid(field, "must be a user id string"))?;
    UserId::parse(s).map_err(|e| invalid(field, e))
}

/// `to` / `broadcast` into a target: one user, a deduplicated list, or everyone.
fn target(
    to: Option<serde_json::Value>,
    broadcast: Option<bool>,
    cfg: &IngestConfig,
) -> Result<Target, IngestError> {
    match (to, broadcast) {
        (Some(_), Some(true)) => Err(invalid(
            "to",
            "give either `to` or `broadcast: true`, not both",
        )),
        (None, None) | (None, Some(false)) => Err(invalid("to", "required (or `broadcast: true`)")),
        (Some(_), Some(false)) => Err(invalid("broadcast", "must be true when present")),
        (None, Some(true)) => Ok(Target::Broadcast),
        (Some(serde_json::Value::Array(list)), None) => {
            if list.is_empty() {
                return Err(invalid("to", "must not be empty"));
            }
            if list.len() > cfg.max_recipients {
                return Err(invalid(
                    "to",
                    format!("at most {} recipients", cfg.max_recipients),
                ));
            }
            let mut users = Vec::with_capacity(list.len());
            let mut seen = HashSet::with_capacity(list.len());
            for (i, v) in list.iter().enumerate() {
                let u = parse_user(&format!("to[{i}]"), v)?;
                if seen.insert(u.clone()) {
                    users.push(u);
                }
            }
            Ok(Target::Users(users))
        }
        (Some(v), None) => Ok(Target::Users(vec![parse_user("to", &v)?])),
    }
}

/// Validates one message body into a [`NewMessage`].
pub fn message(raw: &str, cfg: &IngestConfig) -> Result<NewMessage, IngestError> {
    let m: MessageIn = parse_json(raw)?;
    let target = target(m.to, m.broadcast, cfg)?;
    if let Some(t) = &m.topic {
        if t.is_empty() || t.chars().count() > MAX_TOPIC_LEN {
            return Err(invalid(
                "topic",
                format!("must be 1-{MAX_TOPIC_LEN} characters"),
            ));
        }
    }
    let ttl_s = match m.ttl_s {
        None => cfg.default_ttl_s,
        Some(t) if t >= 1 && t.unsigned_abs() <= cfg.max_ttl_s => t.unsigned_abs(),
        Some(_) => {
            return Err(invalid(
                "ttl_s",
                format!("must be 1-{} seconds", cfg.max_ttl_s),
            ))
        }
    };
    if let Some(k) = &m.idempotency_key {
        if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY_LEN {
            return Err(invalid(
                "idempotency_key",
                format!("must be 1-{MAX_IDEMPOTENCY_KEY_LEN} bytes"),
            ));
        }
    }
    if has_lone_surrogate(m.payload.get()) {
        return Err(invalid(
            "payload",
            "a \\uXXXX escape is half of a UTF-16 surrogate pair; many JSON decoders refuse it",
        ));
    }
    let depth = json_depth(m.payload.get());
    if depth > cfg.max_payload_depth {
        return Err(IngestError::invalid(
            "payload_too_deep",
            format!(
                "payload: nested {depth} levels deep; at most {} (ingest.max_payload_depth)",
                cfg.max_payload_depth
            ),
        ));
    }
    let cost = fanout_bytes(m.payload.get().len(), &target);
    if cost > cfg.max_fanout_bytes {
        return Err(IngestError::TooLarge(format!(
            "payload bytes x recipients is {cost}, over {} (ingest.max_fanout_bytes); send \
             smaller payloads or fewer recipients per message",
            cfg.max_fanout_bytes
        )));
    }
    Ok(NewMessage {
        target,
        topic: m.topic,
        payload: m.payload,
        ttl_s,
        idempotency_key: m.idempotency_key,
        arrived_us: crate::metrics::now_us(),
    })
}

/// Bytes the stored and queued copies of a message cost: one frame per recipient, none
/// for a broadcast (its one frame is shared by every session).
pub fn fanout_bytes(payload_len: usize, target: &Target) -> usize {
    match target {
        Target::Users(users) => payload_len
            .saturating_add(FRAME_OVERHEAD)
            .saturating_mul(users.len()),
        Target::Broadcast => 0,
    }
}

/// Whether valid JSON `raw` has a `\uXXXX` escape of a UTF-16 surrogate that is not part of a
/// high-low pair. The JSON grammar allows it, but it is no character: serde_json and others
/// refuse to decode the whole document, so a device could not read the message.
pub fn has_lone_surrogate(raw: &str) -> bool {
    let unit = |at: usize| -> Option<u16> {
        let b = raw.as_bytes();
        if b.get(at) != Some(&b'\\') || b.get(at + 1) != Some(&b'u') {
            return None;
        }
        raw.get(at + 2..at + 6)
            .and_then(|h| u16::from_str_radix(h, 16).ok())
    };
    let b = raw.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        match unit(i) {
            Some(0xD800..=0xDBFF) => {
                if !matches!(unit(i + 6), Some(0xDC00..=0xDFFF)) {
                    return true;
                }
                i += 12;
            }
            Some(0xDC00..=0xDFFF) => return true,
            Some(_) => i += 6,
            // Any other escape is two bytes (`\\` included).
            None => i += 2,
        }
    }
    false
}

/// How deeply arrays and objects nest in valid JSON `raw` (0 for a scalar).
pub fn json_depth(raw: &str) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in raw.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
