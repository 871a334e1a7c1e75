//! Wire frames: server-to-client JSON encoding, client-to-server parsing, and the close
//! codes ([`CloseReason`]) a session ends with.
//!
//! A message's pieces are serialized once ([`MessageParts`]) and shared by every recipient's
//! [`Frame`], which splices in its seq only when written: fan-out neither re-encodes nor
//! copies the payload. [`wire`] encodes a run of frames once for many sockets (broadcast
//! batches).

use std::sync::Arc;

use bytestring::ByteString;
use serde::Deserialize;

use crate::ids::Seq;

/// The parts of a message frame that are the same for every recipient, pre-encoded once
/// and shared (an `Arc`) by every recipient's [`Frame`].
#[derive(Debug, Clone)]
pub struct MessageParts(Arc<Parts>);

#[derive(Debug)]
struct Parts {
    /// `{"type":"message","id":"<id>","seq":`
    head: String,
    /// `,"topic":<json>,"payload":<raw>,"ts":<ms>}`
    tail: String,
    /// When the message arrived at ingestion, unix µs (for the pipeline latencies).
    arrived_us: u64,
}

/// `s` as a JSON string (quoted, escaped) at the end of `out`.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // unwrap: writing a &str as JSON into a Vec cannot fail
    serde_json::to_writer(out, s).unwrap();
}

/// Pieces built only from `&str`s and JSON output are UTF-8.
fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("frame pieces are built from UTF-8 text")
}

impl MessageParts {
    /// Encodes id, topic, raw payload JSON and timestamp once; `arrived_us` is when the
    /// message arrived (unix µs), carried for the pipeline latencies.
    pub fn new(
        id: &str,
        topic: Option<&str>,
        payload_json: &str,
        ts_ms: u64,
        arrived_us: u64,
    ) -> Self {
        // Escaped straight into the pieces: no string of its own for the id or topic.
        let mut head = Vec::with_capacity(40 + id.len());
        head.extend_from_slice(br#"{"type":"message","id":"#);
        push_json_str(&mut head, id);
        head.extend_from_slice(br#","seq":"#);
        let topic_len = topic.map_or(4, |t| t.len() + 2);
        let mut tail = Vec::with_capacity(40 + topic_len + payload_json.len());
        tail.extend_from_slice(br#","topic":"#);
        match topic {
            Some(t) => push_json_str(&mut tail, t),
            None => tail.extend_from_slice(b"null"),
        }
        tail.extend_from_slice(br#","payload":"#);
        tail.extend_from_slice(payload_json.as_bytes());
        tail.extend_from_slice(br#","ts":"#);
        tail.extend_from_slice(itoa::Buffer::new().format(ts_ms).as_bytes());
        tail.push(b'}');
        Self(Arc::new(Parts {
            head: utf8(head),
            tail: utf8(tail),
            arrived_us,
        }))
    }

    /// The live frame for one recipient user, with that user's `seq`: the shared parts and
    /// the seq, spliced together only when written.
    pub fn frame(&self, seq: Seq) -> Frame {
        Frame::Shared {
            parts: self.clone(),
            seq,
            live: true,
        }
    }

    /// The frame for a broadcast: `seq` is null and `broadcast` is true.
    pub fn broadcast_frame(&self) -> ByteString {
        let p = &self.0;
        let mut s = String::with_capacity(p.head.len() + 24 + p.tail.len());
        s.push_str(&p.head);
        s.push_str(r#"null,"broadcast":true"#);
        s.push_str(&p.tail);
        ByteString::from(s)
    }
}

/// One recipient's message frame: whole text (as a store read it back), whole text with
/// its arrival time (as a peer forwarded a live push), or a message's shared parts with the
/// recipient's seq, so a message to many users holds its payload once however many frames
/// are queued or stored in memory. Live frames (pushed, not read back from the store) know
/// when their message arrived, for the producer-to-socket latency.
#[derive(Debug, Clone)]
pub enum Frame {
    Text(ByteString),
    Forwarded {
        text: ByteString,
        arrived_us: u64,
    },
    Shared {
        parts: MessageParts,
        seq: Seq,
        /// Pushed live (false: read back from the store).
        live: bool,
    },
}

impl Frame {
    /// When the message of a live frame arrived (unix µs); `None` for frames read back
    /// from the store.
    pub fn arrived_us(&self) -> Option<u64> {
        match self {
            Frame::Text(_) => None,
            Frame::Forwarded { arrived_us, .. } => Some(*arrived_us),
            Frame::Shared { parts, live, .. } => live.then_some(parts.0.arrived_us),
        }
    }

    /// The same frame as read back from the store (not live).
    pub fn stored(&self) -> Frame {
        match self {
            Frame::Shared { parts, seq, .. } => Frame::Shared {
                parts: parts.clone(),
                seq: *seq,
                live: false,
            },
            Frame::Forwarded { text, .. } => Frame::Text(text.clone()),
            Frame::Text(t) => Frame::Text(t.clone()),
        }
    }

    /// Bytes of the frame's text.
    pub fn len(&self) -> usize {
        self.pieces(&mut itoa::Buffer::new())
            .iter()
            .map(|piece| piece.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the frame's text to `out`.
    pub fn write_to(&self, out: &mut String) {
        for piece in self.pieces(&mut itoa::Buffer::new()) {
            out.push_str(piece);
        }
    }

    /// The frame's text as up to three pieces (shared head, seq, shared tail), `seq`
    /// formatted in `buf`: written out in order they are the text, with nothing spliced
    /// in memory first.
    pub fn pieces<'a>(&'a self, buf: &'a mut itoa::Buffer) -> [&'a str; 3] {
        match self {
            Frame::Text(t) | Frame::Forwarded { text: t, .. } => [t, "", ""],
            Frame::Shared { parts, seq, .. } => [&parts.0.head, buf.format(*seq), &parts.0.tail],
        }
    }

    /// The frame's text (for the socket): a cheap clone of whole text, else spliced now.
    pub fn to_text(&self) -> ByteString {
        match self {
            Frame::Text(t) | Frame::Forwarded { text: t, .. } => t.clone(),
            Frame::Shared { .. } => {
                let mut s = String::with_capacity(self.len());
                self.write_to(&mut s);
                ByteString::from(s)
            }
        }
    }
}

impl std::fmt::Display for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.pieces(&mut itoa::Buffer::new())
            .iter()
            .try_for_each(|piece| f.write_str(piece))
    }
}

impl PartialEq for Frame {
    fn eq(&self, other: &Frame) -> bool {
        self.to_text() == other.to_text()
    }
}

impl Eq for Frame {}

impl From<ByteString> for Frame {
    fn from(t: ByteString) -> Frame {
        Frame::Text(t)
    }
}

impl From<String> for Frame {
    fn from(t: String) -> Frame {
        Frame::Text(ByteString::from(t))
    }
}

/// Bytes a message frame adds to the topic and payload it carries: the fixed text with
/// `null,"broadcast":true` in place of a seq (78 bytes), the id (a UUID, 38 bytes quoted), a
/// 20-digit timestamp and `null` for a missing topic: 140 bytes, rounded up for headroom.
pub const MESSAGE_FRAME_OVERHEAD: usize = 256;

/// The largest message frame (per-user or broadcast) this node builds from a producer body
/// of at most `max_body_bytes`. Topic and payload both come from that body: the payload
/// verbatim, the topic re-encoded, which never makes a JSON string longer than it was in the
/// body (escapes come out no longer than they went in). So the body bounds them together.
pub const fn max_message_frame(max_body_bytes: usize) -> usize {
    max_body_bytes + MESSAGE_FRAME_OVERHEAD
}

/// `{"type":"welcome",…}` sent once when a session starts.
pub fn welcome(
    session: &str,
    node: &str,
    user: &str,
    heartbeat_ms: u64,
    last_seq: Seq,
) -> ByteString {
    serde_json::json!({
        "type": "welcome",
        "session": session,
        "node": node,
        "user": user,
        "heartbeat_ms": heartbeat_ms,
        "last_seq": last_seq,
    })
    .to_string()
    .into()
}

/// `{"type":"reconnect","jitter_ms":…}`, sent just before a drain closes the session with
/// 1012: reconnect now, after a random wait of up to `jitter_ms`.
pub fn reconnect(jitter_ms: u64) -> ByteString {
    format!(r#"{{"type":"reconnect","jitter_ms":{jitter_ms}}}"#).into()
}

/// `{"type":"pong"}`.
pub fn pong() -> ByteString {
    ByteString::from_static(r#"{"type":"pong"}"#)
}

/// `{"type":"error","code":…,"message":…}` for a bad client frame; the session stays open.
pub fn error(code: &str, message: &str) -> ByteString {
    serde_json::json!({"type": "error", "code": code, "message": message})
        .to_string()
        .into()
}

/// Tells a resuming client that messages after `after` up to `resume_from - 1` can no longer
/// be replayed (retention or the replay limit); it may read them from the history API where
/// they are still retained.
pub fn history_truncated(after: Seq, resume_from: Seq) -> ByteString {
    serde_json::json!({
        "type": "history_truncated",
        "after": after,
        "resume_from": resume_from,
    })
    .to_string()
    .into()
}

/// Client-to-server frames.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientFrame {
    /// Application-level ping; may carry a fresh token to extend the session.
    Ping {
        #[serde(default)]
        token: Option<String>,
    },
    /// Cumulative ack: everything up to `seq` is handled on this device.
    Ack { seq: Seq },
}

/// Why a client frame was not understood.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Not JSON, or a JSON value that is not an object with a `type`.
    Malformed(String),
    /// A `type` Herald does not know.
    UnknownType(String),
}

impl ClientFrame {
    /// Parses one text frame.
    pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
        match serde_json::from_str::<ClientFrame>(text) {
            Ok(f) => Ok(f),
            Err(e) => {
                // Tell "unknown type" apart from other shape errors for a clearer reply.
                #[derive(Deserialize)]
                struct Typed {
                    #[serde(rename = "type")]
                    ty: String,
                }
                match serde_json::from_str::<Typed>(text) {
                    Ok(t) if !matches!(t.ty.as_str(), "ping" | "ack") => {
                        Err(FrameError::UnknownType(t.ty))
                    }
                    _ => Err(FrameError::Malformed(e.to_string())),
                }
            }
        }
    }
}

/// Why a session is being closed; each maps to one WebSocket close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// 1001: the session cannot go on here (its first history read kept failing).
    GoingAway,
    /// 1012: the node is draining (restart); reconnect now, with jitter.
    Restart,
    /// 4001: the token expired and was not refreshed.
    AuthExpired,
    /// 4002: the client does not read fast enough.
    SlowConsumer,
    /// 4003: a node limit or policy.
    Policy,
    /// 4008: no traffic from the client within the heartbeat timeout.
    HeartbeatTimeout,
    /// 1009: a client frame over the size limit.
    FrameTooBig,
    /// 1002: the client broke the WebSocket protocol.
    ProtocolError,
    /// 1000: the client closed.
    Normal,
}

impl CloseReason {
    /// The WebSocket close code.
    pub fn code(self) -> u16 {
        match self {
            CloseReason::GoingAway => 1001,
            CloseReason::Restart => 1012,
            CloseReason::AuthExpired => 4001,
            CloseReason::SlowConsumer => 4002,
            CloseReason::Policy => 4003,
            CloseReason::HeartbeatTimeout => 4008,
            CloseReason::FrameTooBig => 1009,
            CloseReason::ProtocolError => 1002,
            CloseReason::Normal => 1000,
        }
    }

    /// The close reason text (short: control frames carry at most 123 bytes of it).
    pub fn text(self) -> &'static str {
        match self {
            CloseReason::GoingAway => "server going away, reconnect",
            CloseReason::Restart => "server restarting, reconnect",
            CloseReason::AuthExpired => "token expired",
            CloseReason::SlowConsumer => "slow consumer",
            CloseReason::Policy => "policy violation",
            CloseReason::HeartbeatTimeout => "heartbeat timeout",
            CloseReason::FrameTooBig => "frame too big",
            CloseReason::ProtocolError => "protocol error",
            CloseReason::Normal => "bye",
        }
    }
}

pub mod wire;

#[cfg(test)]
mod tests;
