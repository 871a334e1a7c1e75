//! Tests of the wire frames: message frames, shared parts, client frame parsing (with a
//! property test over random client text).

use super::*;

#[test]
fn recipients_frames_share_one_copy_of_the_payload_and_splice_their_seq() {
    let payload = format!("\"{}\"", "x".repeat(10_000));
    let p = MessageParts::new("m1", Some("t"), &payload, 5, 0);
    let frames: Vec<Frame> = (1..=1000).map(|seq| p.frame(seq)).collect();
    assert_eq!(Arc::strong_count(&p.0), 1001, "one copy, shared");
    for (i, f) in frames.iter().enumerate() {
        let text = f.to_text();
        assert_eq!(f.len(), text.len());
        assert_eq!(f.to_string(), &*text);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["seq"], i as u64 + 1);
    }
    assert_eq!(frames[0], Frame::from(frames[0].to_string()));
}

#[test]
fn message_frame_is_valid_json_with_the_recipients_seq() {
    let p = MessageParts::new("m1", Some("news"), r#"{"a":[1,2]}"#, 1700, 0);
    let f: serde_json::Value = serde_json::from_str(&p.frame(42).to_text()).unwrap();
    assert_eq!(f["type"], "message");
    assert_eq!(f["id"], "m1");
    assert_eq!(f["seq"], 42);
    assert_eq!(f["topic"], "news");
    assert_eq!(f["payload"]["a"][1], 2);
    assert_eq!(f["ts"], 1700);
    let b: serde_json::Value = serde_json::from_str(&p.broadcast_frame()).unwrap();
    assert!(b["seq"].is_null());
    assert_eq!(b["broadcast"], true);
    let n: serde_json::Value = serde_json::from_str(
        &MessageParts::new("m\"2", None, "3", 1, 0)
            .frame(1)
            .to_text(),
    )
    .unwrap();
    assert!(n["topic"].is_null());
    assert_eq!(n["id"], "m\"2");
}

#[test]
fn no_message_frame_outgrows_the_bound_derived_from_its_producer_body() {
    let id = uuid::Uuid::now_v7().to_string();
    let topics = [None, Some("t"), Some("\u{1}\"\\\n/é"), Some("\u{7f}\u{1f}")];
    let payloads = [r#"1"#, r#"{"a":"\u0001\"\\"}"#, r#"[1, 2,   3]"#];
    for topic in topics {
        for payload in payloads {
            let mut body = serde_json::json!({"to": "u", "payload": 0});
            if let Some(t) = topic {
                body["topic"] = t.into();
            }
            let body = body
                .to_string()
                .replace(r#""payload":0"#, &format!(r#""payload":{payload}"#));
            let limit = max_message_frame(body.len());
            let p = MessageParts::new(&id, topic, payload, u64::MAX, 0);
            assert!(p.frame(u64::MAX).len() <= limit, "{body}");
            assert!(p.broadcast_frame().len() <= limit, "{body}");
        }
    }
}

#[test]
fn client_frames_parse_and_unknown_types_are_named() {
    assert_eq!(
        ClientFrame::parse(r#"{"type":"ping"}"#),
        Ok(ClientFrame::Ping { token: None })
    );
    assert_eq!(
        ClientFrame::parse(r#"{"type":"ack","seq":7}"#),
        Ok(ClientFrame::Ack { seq: 7 })
    );
    assert_eq!(
        ClientFrame::parse(r#"{"type":"subscribe"}"#),
        Err(FrameError::UnknownType("subscribe".into()))
    );
    assert!(matches!(
        ClientFrame::parse("not json"),
        Err(FrameError::Malformed(_))
    ));
    assert!(matches!(
        ClientFrame::parse(r#"{"type":"ack"}"#),
        Err(FrameError::Malformed(_))
    ));
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    fn framish() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just(r#"{"type":"#.to_string()),
            Just(r#""ping""#.to_string()),
            Just(r#""ack""#.to_string()),
            Just(r#","seq":"#.to_string()),
            Just(r#","token":"#.to_string()),
            Just("}".to_string()),
            Just("null".to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            "\"[a-z\\\\\"]{0,8}\"",
            any::<String>(),
        ];
        proptest::collection::vec(piece, 0..10).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]

        /// Whatever a client sends, parsing answers without panicking, and an ack it
        /// accepts carries the seq that was written.
        #[test]
        fn any_client_text_parses_or_is_refused(text in framish()) {
            if let Ok(ClientFrame::Ack { seq }) = ClientFrame::parse(&text) {
                prop_assert!(text.contains(&seq.to_string()));
            }
        }

        #[test]
        fn every_ack_seq_round_trips(seq in any::<u64>()) {
            let text = format!(r#"{{"type":"ack","seq":{seq}}}"#);
            prop_assert_eq!(ClientFrame::parse(&text).unwrap(), ClientFrame::Ack { seq });
        }
    }
}

#[test]
fn live_frames_know_when_their_message_arrived_and_stored_copies_do_not() {
    let p = MessageParts::new("m1", None, "1", 5, 1_234);
    let live = p.frame(3);
    assert_eq!(live.arrived_us(), Some(1_234));
    let stored = live.stored();
    assert_eq!(stored.arrived_us(), None);
    assert_eq!(stored, live, "same text either way");
    let fwd = Frame::Forwarded {
        text: live.to_text(),
        arrived_us: 99,
    };
    assert_eq!(fwd.arrived_us(), Some(99));
    assert_eq!(fwd.len(), live.len());
    assert_eq!(fwd.stored().arrived_us(), None);
}

#[test]
fn a_drain_tells_the_client_to_reconnect_with_jitter_and_closes_with_1012() {
    let f: serde_json::Value = serde_json::from_str(&reconnect(750)).unwrap();
    assert_eq!(f["type"], "reconnect");
    assert_eq!(f["jitter_ms"], 750);
    assert_eq!(CloseReason::Restart.code(), 1012);
    assert!(CloseReason::Restart.text().len() <= 123);
}
