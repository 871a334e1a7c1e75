//! Tests of producer input validation, with property tests over random bodies.

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
