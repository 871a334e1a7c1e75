//! The WebSocket client-frame parser: any text a client sends is parsed or refused, never a
//! panic; what it accepts says what the text said.
//!
//! WebSocket text frames are valid UTF-8 (the transport refuses others), so non-UTF-8 input
//! is skipped.

#![no_main]

use herald::frames::{ClientFrame, FrameError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = ClientFrame::parse(text);
    // The same text always gets the same answer.
    assert_eq!(parsed, ClientFrame::parse(text));
    match parsed {
        Ok(ClientFrame::Ack { seq }) => {
            // A JSON integer has one spelling: the seq acked is digits of the text.
            assert!(text.contains(&seq.to_string()), "ack {seq} from {text:?}");
            let canonical = format!(r#"{{"type":"ack","seq":{seq}}}"#);
            assert_eq!(ClientFrame::parse(&canonical), Ok(ClientFrame::Ack { seq }));
        }
        Ok(ClientFrame::Ping { token }) => {
            // The canonical form of what was understood is understood the same way.
            let canonical = serde_json::json!({"type": "ping", "token": token}).to_string();
            assert_eq!(
                ClientFrame::parse(&canonical),
                Ok(ClientFrame::Ping { token })
            );
        }
        Err(FrameError::UnknownType(ty)) => {
            // A known type with a bad shape is malformed, never "unknown".
            assert!(
                ty != "ping" && ty != "ack",
                "known type {ty:?} named unknown"
            );
        }
        Err(FrameError::Malformed(_)) => {}
    }
});
