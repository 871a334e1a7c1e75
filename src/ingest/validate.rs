//! Validation of producer input: strict JSON parsing that names the field at fault, and one
//! message body into a [`NewMessage`]. Plain functions; every refusal is an
//! [`IngestError::Invalid`] with the code and message the API answers.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::IngestError;
use crate::config::IngestConfig;
use crate::ids::UserId;
use crate::store::{NewMessage, Target};

/// Longest topic accepted, characters.
pub const MAX_TOPIC_LEN: usize = 128;
/// Longest idempotency key accepted, bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;

/// One message as producers send it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageIn {
    #[serde(default)]
    to: Option<serde_json::Value>,
    #[serde(default)]
    broadcast: Option<bool>,
    #[serde(default)]
    topic: Option<String>,
    payload: Box<RawValue>,
    #[serde(default)]
    ttl_s: Option<i64>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// Parses JSON, naming the field at fault (`ttl_s: invalid type …`) when the shape is wrong.
pub fn parse_json<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, IngestError> {
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
            for (i, v) in list.iter().enumerate() {
                let u = parse_user(&format!("to[{i}]"), v)?;
                if !users.contains(&u) {
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
    Ok(NewMessage {
        target,
        topic: m.topic,
        payload: m.payload,
        ttl_s,
        idempotency_key: m.idempotency_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> IngestConfig {
        IngestConfig {
            max_recipients: 3,
            ..IngestConfig::default()
        }
    }

    fn refused(body: &str) -> (&'static str, String) {
        match message(body, &cfg()) {
            Err(IngestError::Invalid { code, message }) => (code, message),
            Err(e) => panic!("unexpected error {e:?}"),
            Ok(_) => panic!("accepted {body}"),
        }
    }

    #[test]
    fn a_valid_message_keeps_its_payload_verbatim_and_dedupes_recipients() {
        let m = message(
            r#"{"to":["a","b","a"],"payload":{"x": [1, 2]},"topic":"t","ttl_s":5}"#,
            &cfg(),
        )
        .unwrap();
        match m.target {
            Target::Users(u) => assert_eq!(u.len(), 2),
            Target::Broadcast => panic!("not a broadcast"),
        }
        assert_eq!(m.payload.get(), r#"{"x": [1, 2]}"#);
        assert_eq!(m.ttl_s, 5);
    }

    #[test]
    fn each_bad_field_is_named_in_the_error() {
        assert_eq!(
            refused(r#"{"payload":1}"#).1,
            "to: required (or `broadcast: true`)"
        );
        assert!(refused(r#"{"to":"a","broadcast":true,"payload":1}"#)
            .1
            .starts_with("to:"));
        assert!(refused(r#"{"to":["a","b","c","d"],"payload":1}"#)
            .1
            .contains("at most 3"));
        assert!(refused(r#"{"to":[],"payload":1}"#)
            .1
            .contains("must not be empty"));
        assert!(refused(r#"{"to":[1],"payload":1}"#).1.starts_with("to[0]:"));
        assert!(refused(r#"{"to":"a","payload":1,"ttl_s":0}"#)
            .1
            .starts_with("ttl_s:"));
        assert!(refused(r#"{"to":"a","payload":1,"topic":""}"#)
            .1
            .starts_with("topic:"));
        assert!(refused(r#"{"to":"a","payload":1,"idempotency_key":""}"#)
            .1
            .starts_with("idempotency_key:"));
        assert_eq!(
            refused(r#"{"to":"a","payload":1,"ttl_s":"x"}"#).0,
            "invalid_body"
        );
        assert_eq!(refused(r#"{"to":"a","payload":1"#).0, "invalid_json");
        assert_eq!(refused(r#"{"to":"a","payload":1} x"#).0, "invalid_json");
    }
}
