//! Validation of producer input: strict JSON parsing that names the field at fault, and one
//! message body into a [`NewMessage`]. Plain functions; every refusal is an
//! [`IngestError::Invalid`] with the code and message the API answers.

use std::collections::HashSet;

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
/// Bytes a message frame adds around its payload (type, id, seq, ts, topic), roughly.
pub const FRAME_OVERHEAD: usize = 160;

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

    #[test]
    fn lone_surrogate_escapes_are_refused_and_pairs_and_escaped_backslashes_are_not() {
        assert!(has_lone_surrogate(r#""\ude00""#));
        assert!(has_lone_surrogate(r#""\ud83d""#));
        assert!(has_lone_surrogate(r#""\ud83d\u0041""#));
        assert!(has_lone_surrogate(r#"["\ud83d","\ude00"]"#));
        assert!(
            !has_lone_surrogate(r#""\ud83d\ude00""#),
            "a pair is one character"
        );
        assert!(
            !has_lone_surrogate(r#""\\ude00""#),
            "an escaped backslash, then text"
        );
        assert!(!has_lone_surrogate(r#""\u00e9 \n \"q\"""#));
        assert_eq!(
            refused(r#"{"to":["c"],"payload":"\ude00"}"#).1,
            "payload: a \\uXXXX escape is half of a UTF-16 surrogate pair; many JSON decoders refuse it"
        );
    }

    #[test]
    fn nesting_depth_counts_arrays_and_objects_but_not_brackets_inside_strings() {
        assert_eq!(json_depth("1"), 0);
        assert_eq!(json_depth(r#"{"a":[1,{"b":2}]}"#), 3);
        assert_eq!(json_depth(r#"["[[[{{", "\"]]"]"#), 1);
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(json_depth(&deep), 100_000);
        let body = format!(r#"{{"to":"a","payload":{deep}}}"#);
        assert!(refused(&body).1.contains("ingest.max_payload_depth"));
    }

    #[test]
    fn payload_times_recipients_over_the_fanout_budget_is_too_large() {
        let cfg = IngestConfig {
            max_fanout_bytes: 10_000,
            ..IngestConfig::default()
        };
        let payload = format!("\"{}\"", "x".repeat(2_000));
        let two = format!(r#"{{"to":["a","b"],"payload":{payload}}}"#);
        assert!(message(&two, &cfg).is_ok());
        let ten = format!(r#"{{"to":["a","b","c","d","e","f"],"payload":{payload}}}"#);
        assert!(matches!(message(&ten, &cfg), Err(IngestError::TooLarge(m))
            if m.contains("ingest.max_fanout_bytes")));
        let cast = format!(r#"{{"broadcast":true,"payload":{payload}}}"#);
        assert!(message(&cast, &cfg).is_ok(), "a broadcast shares one frame");
    }

    mod fuzz {
        use proptest::prelude::*;

        use super::*;

        /// JSON-ish text: fragments of valid message bodies glued at random.
        fn jsonish() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("{".to_string()),
                Just("}".to_string()),
                Just("[".to_string()),
                Just("]".to_string()),
                Just(",".to_string()),
                Just(":".to_string()),
                Just(r#""to""#.to_string()),
                Just(r#""payload""#.to_string()),
                Just(r#""broadcast""#.to_string()),
                Just(r#""ttl_s""#.to_string()),
                Just(r#""topic""#.to_string()),
                Just(r#""idempotency_key""#.to_string()),
                Just("true".to_string()),
                Just("null".to_string()),
                any::<i64>().prop_map(|n| n.to_string()),
                "\"[a-z\\\\\"]{0,6}\"",
                any::<String>(),
            ];
            proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4000))]

            /// Whatever a producer sends, validation answers (never panics), and what it
            /// accepts is within every bound.
            #[test]
            fn any_body_is_refused_or_accepted_within_the_bounds(body in jsonish()) {
                let cfg = cfg();
                if let Ok(m) = message(&body, &cfg) {
                    prop_assert!(json_depth(m.payload.get()) <= cfg.max_payload_depth);
                    prop_assert!(
                        serde_json::from_str::<serde_json::Value>(m.payload.get()).is_ok(),
                        "an accepted payload decodes"
                    );
                    prop_assert!(m.ttl_s >= 1 && m.ttl_s <= cfg.max_ttl_s);
                    if let Target::Users(u) = &m.target {
                        prop_assert!(!u.is_empty() && u.len() <= cfg.max_recipients);
                    }
                    prop_assert!(
                        fanout_bytes(m.payload.get().len(), &m.target) <= cfg.max_fanout_bytes
                    );
                }
            }

            #[test]
            fn any_valid_message_with_random_fields_round_trips(
                users in proptest::collection::vec("[a-z0-9]{1,8}", 1..4),
                ttl in 1i64..100,
                payload in "[a-z]{0,20}",
            ) {
                let body = serde_json::json!({"to": users, "payload": payload, "ttl_s": ttl});
                let m = message(&body.to_string(), &cfg()).unwrap();
                prop_assert_eq!(m.ttl_s, ttl as u64);
                prop_assert_eq!(m.payload.get(), serde_json::to_string(&payload).unwrap());
            }
        }
    }
}
