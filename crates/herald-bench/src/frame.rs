//! Reading server frames in the bench client: only what latency and ordering need (seq,
//! the payload's send stamp, the stored `ts`), as cheaply as possible.
//!
//! A worker reads up to a few hundred thousand frames a second on one thread, so message
//! frames in the exact shape the server writes them (`{"type":"message","id":…,"seq":…,
//! …,"payload":{"t":…,"r":…},"ts":…}`) are scanned by hand; anything else goes through
//! serde, which gives the same answer more slowly.

use serde::Deserialize;
use serde_json::value::RawValue;

/// The bench's payload: send time (unix µs) and run id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Stamp {
    pub t: u64,
    pub r: u64,
}

/// What the bench takes from one message frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageFrame {
    /// Per-user sequence number; `None` for broadcasts.
    pub seq: Option<u64>,
    /// The bench stamp, when the payload is one.
    pub stamp: Option<Stamp>,
    /// Unix ms at which the server stored the message.
    pub ts_ms: Option<u64>,
}

/// Parses a text frame; `None` when it is not a message frame (welcome, pong, error, …)
/// or not JSON.
pub fn parse(text: &str) -> Option<MessageFrame> {
    scan(text).or_else(|| parse_slow(text))
}

/// A leading unsigned integer and the text after it.
fn number(s: &str) -> Option<(u64, &str)> {
    let bytes = s.as_bytes();
    let mut n: u64 = 0;
    let mut len = 0;
    while let Some(d) = bytes.get(len).filter(|b| b.is_ascii_digit()) {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        len += 1;
    }
    (len > 0).then(|| (n, &s[len..]))
}

/// The trailing `,"ts":<digits>}` of a frame.
fn trailing_ts(text: &str) -> Option<u64> {
    let body = text.strip_suffix('}')?;
    let digits = body.bytes().rev().take_while(u8::is_ascii_digit).count();
    let (head, ts) = body.split_at(body.len() - digits);
    head.ends_with(r#","ts":"#)
        .then(|| number(ts).map(|(n, _)| n))?
}

/// The fast path: the server's own field order with a bench stamp first in the payload.
fn scan(text: &str) -> Option<MessageFrame> {
    let rest = text.strip_prefix(r#"{"type":"message","id":""#)?;
    // Server ids never contain escaped quotes.
    let rest = &rest[rest.find('"')? + 1..];
    let rest = rest.strip_prefix(r#","seq":"#)?;
    let (seq, rest) = match rest.strip_prefix("null") {
        Some(r) => (None, r),
        None => number(rest).map(|(n, r)| (Some(n), r))?,
    };
    const PAYLOAD: &str = r#","payload":{"t":"#;
    // The bench sends no topic; search only when there is one.
    let rest = rest.strip_prefix(r#","broadcast":true"#).unwrap_or(rest);
    let rest = match rest.strip_prefix(r#","topic":null"#) {
        Some(r) => r.strip_prefix(PAYLOAD)?,
        None => &rest[rest.find(PAYLOAD)? + PAYLOAD.len()..],
    };
    let (t, rest) = number(rest)?;
    let (r, _) = number(rest.strip_prefix(r#","r":"#)?)?;
    Some(MessageFrame {
        seq,
        stamp: Some(Stamp { t, r }),
        ts_ms: Some(trailing_ts(text)?),
    })
}

/// The fields of a server frame the bench looks at, for the serde path.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default, borrow)]
    payload: Option<&'a RawValue>,
    #[serde(default)]
    ts: Option<u64>,
}

fn parse_slow(text: &str) -> Option<MessageFrame> {
    let frame = serde_json::from_str::<Frame>(text).ok()?;
    if frame.kind != "message" {
        return None;
    }
    Some(MessageFrame {
        seq: frame.seq,
        stamp: frame
            .payload
            .and_then(|p| serde_json::from_str::<Stamp>(p.get()).ok()),
        ts_ms: frame.ts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald::frames::MessageParts;

    fn both(text: &str) -> (Option<MessageFrame>, Option<MessageFrame>) {
        (scan(text), parse_slow(text))
    }

    #[test]
    fn server_message_frames_take_the_fast_path_and_agree_with_serde() {
        let parts = MessageParts::new(
            "01J-abc",
            None,
            r#"{"t":1700000000123456,"r":42}"#,
            1_700_000_000_200,
            0,
        );
        let targeted = parts.frame(7).to_string();
        let (fast, slow) = both(&targeted);
        assert_eq!(fast, slow);
        assert_eq!(
            fast,
            Some(MessageFrame {
                seq: Some(7),
                stamp: Some(Stamp {
                    t: 1_700_000_000_123_456,
                    r: 42
                }),
                ts_ms: Some(1_700_000_000_200),
            })
        );
        let broadcast = parts.broadcast_frame().to_string();
        let (fast, slow) = both(&broadcast);
        assert_eq!(fast, slow);
        assert_eq!(fast.map(|f| f.seq), Some(None));
    }

    #[test]
    fn topics_and_padding_do_not_confuse_the_scan() {
        let parts = MessageParts::new(
            "id1",
            Some("news,\"payload\":"),
            r#"{"t":5,"r":6,"p":"xxxx,\"ts\":9"}"#,
            77,
            0,
        );
        let text = parts.frame(3).to_string();
        assert_eq!(parse(&text), parse_slow(&text));
        assert_eq!(parse(&text).and_then(|f| f.ts_ms), Some(77));
    }

    #[test]
    fn numbers_and_trailing_ts_are_read_exactly() {
        assert_eq!(number("123,x"), Some((123, ",x")));
        assert_eq!(number("x"), None);
        assert_eq!(number("99999999999999999999"), None, "overflow is refused");
        assert_eq!(trailing_ts(r#"{"a":1,"ts":42}"#), Some(42));
        assert_eq!(trailing_ts(r#"{"a":1,"xts":42}"#), None);
        assert_eq!(trailing_ts(r#"{"a":1,"ts":}"#), None);
    }

    #[test]
    fn foreign_payloads_have_no_stamp_and_other_frames_are_not_messages() {
        let parts = MessageParts::new("id2", None, r#"{"hello":"world"}"#, 1, 0);
        let text = parts.frame(1).to_string();
        assert_eq!(scan(&text), None, "falls back to serde");
        assert_eq!(parse(&text).map(|f| f.stamp), Some(None));
        assert_eq!(
            parse(r#"{"type":"welcome","session":"s","last_seq":0}"#),
            None
        );
        assert_eq!(parse(r#"{"type":"pong"}"#), None);
        assert_eq!(parse("not json"), None);
    }
}
