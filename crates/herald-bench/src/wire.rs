//! The client side of the WebSocket wire (RFC 6455) as the bench needs it, without I/O:
//! the upgrade request, reading the `101` answer, splitting server frames out of a read
//! buffer, and masked client frames (ack, pong, close).
//!
//! Hand-written instead of `tungstenite` because the bench shares the server's cores: a
//! worker reads up to half a million frames a second on one thread, and here a frame costs
//! a header check and a slice, with no allocation, no buffer zeroing and no wake-up of its
//! own (every frame already in the buffer is handled in one pass). Every connection sends
//! RFC 6455's sample key, so the expected `Sec-WebSocket-Accept` is a constant; the server
//! cannot tell and still computes it per handshake.

use super::http1::find;

/// The RFC 6455 sample `Sec-WebSocket-Key` (section 1.3) every connection sends.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// `Sec-WebSocket-Accept` for [`KEY`]: base64(SHA-1(key + GUID)), from the same section.
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// Longest `101` head accepted, bytes.
pub const MAX_HEAD: usize = 8 * 1024;
/// The mask of every client frame. Any 4 bytes are valid; the server unmasks either way.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Why a server's bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The answer to the upgrade was not `101` (carries the status and the first line).
    Status(u16, String),
    /// The answer was not HTTP, too long, or had the wrong `Sec-WebSocket-Accept`.
    BadHandshake(String),
    /// A frame broke RFC 6455 (masked, reserved bits, bad control frame) or was too big.
    Protocol(String),
}

impl WireError {
    /// The short reason the bench counts failures under.
    pub fn reason(&self) -> String {
        match self {
            WireError::Status(code, _) => format!("http_{code}"),
            WireError::BadHandshake(_) => "handshake".into(),
            WireError::Protocol(_) => "protocol".into(),
        }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Status(_, line) => write!(f, "upgrade refused: {line}"),
            WireError::BadHandshake(why) => write!(f, "bad upgrade answer: {why}"),
            WireError::Protocol(why) => write!(f, "websocket protocol error: {why}"),
        }
    }
}

/// The upgrade request for `path_and_query` on `host`.
pub fn upgrade_request(host: &str, path_and_query: &str) -> Vec<u8> {
    format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// Reads the answer to the upgrade from the start of `buf`: `Ok(None)` while its head is
/// incomplete, `Ok(Some(n))` once a valid `101` head of `n` bytes is there (frames may
/// follow it in the same read).
pub fn read_upgrade(buf: &[u8]) -> Result<Option<usize>, WireError> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err(WireError::BadHandshake(format!(
                "no end of head in {MAX_HEAD} bytes"
            )));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end])
        .map_err(|_| WireError::BadHandshake("head is not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| WireError::BadHandshake(format!("status line `{status_line}`")))?;
    if status != 101 {
        return Err(WireError::Status(status, status_line.to_string()));
    }
    let accept = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|(_, value)| value.trim());
    match accept {
        Some(ACCEPT) => Ok(Some(end + 4)),
        other => Err(WireError::BadHandshake(format!(
            "Sec-WebSocket-Accept is {other:?}, expected {ACCEPT}"
        ))),
    }
}

/// One complete server frame at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    /// Where the payload starts and ends in the buffer.
    pub payload: (usize, usize),
}

impl Frame {
    /// Bytes of the buffer the frame takes, header included.
    pub fn len(&self) -> usize {
        self.payload.1
    }
}

/// Splits the first frame off `buf`: `Ok(None)` while it is incomplete, an error when it
/// breaks the protocol or its payload exceeds `max_payload`.
pub fn next_frame(buf: &[u8], max_payload: usize) -> Result<Option<Frame>, WireError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    let protocol = |why: String| Err(WireError::Protocol(why));
    if b0 & 0x70 != 0 {
        return protocol(format!("reserved bits set ({b0:#04x})"));
    }
    if b1 & 0x80 != 0 {
        return protocol("the server masked a frame".into());
    }
    let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0f);
    let (len, header) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            // unwrap: the slice is 8 bytes long
            Some(b) => (u64::from_be_bytes(b.try_into().unwrap()), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if opcode >= OP_CLOSE && (len > 125 || !fin) {
        return protocol(format!(
            "control frame {opcode:#x} of {len} bytes, fin {fin}"
        ));
    }
    if !matches!(
        opcode,
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
    ) {
        return protocol(format!("unknown opcode {opcode:#x}"));
    }
    let len = match usize::try_from(len) {
        Ok(n) if n <= max_payload => n,
        _ => return protocol(format!("frame of {len} bytes over the {max_payload} limit")),
    };
    if buf.len() < header + len {
        return Ok(None);
    }
    Ok(Some(Frame {
        fin,
        opcode,
        payload: (header, header + len),
    }))
}

/// The close code in a close frame's payload, when it has one.
pub fn close_code(payload: &[u8]) -> Option<u16> {
    match payload {
        [a, b, ..] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

/// Appends a frame header: `b0` (FIN and opcode), then the payload length `len` in the
/// shortest form (RFC 6455 5.2), with the mask bit set when `masked`.
fn push_header(out: &mut Vec<u8>, b0: u8, masked: bool, len: usize) {
    let mask_bit = if masked { 0x80 } else { 0 };
    out.push(b0);
    match len {
        0..=125 => out.push(mask_bit | len as u8),
        126..=0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

/// Appends one masked client frame to `out`.
pub fn push_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    push_header(out, 0x80 | opcode, true, payload.len());
    out.extend_from_slice(&MASK);
    out.extend(
        payload
            .iter()
            .zip(MASK.iter().cycle())
            .map(|(byte, mask)| byte ^ mask),
    );
}

/// An unmasked server frame, as the server writes it (tests).
#[cfg(test)]
pub(crate) fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    push_header(&mut out, u8::from(fin) << 7 | opcode, false, payload.len());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_constant_accept_is_the_one_the_server_computes_for_the_key() {
        let computed = actix_http::ws::hash_key(KEY.as_bytes());
        assert_eq!(std::str::from_utf8(&computed).unwrap(), ACCEPT);
    }

    #[test]
    fn a_101_head_is_found_with_the_frames_that_follow_it() {
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\
             sec-websocket-accept: {ACCEPT}\r\n\r\n"
        );
        let mut buf = head.clone().into_bytes();
        assert_eq!(read_upgrade(&buf[..buf.len() - 1]), Ok(None), "incomplete");
        buf.extend_from_slice(&server_frame(true, OP_TEXT, b"{}"));
        assert_eq!(read_upgrade(&buf), Ok(Some(head.len())));
        let frame = next_frame(&buf[head.len()..], 1024).unwrap().unwrap();
        assert_eq!(frame.opcode, OP_TEXT);
    }

    #[test]
    fn refusals_and_wrong_accepts_are_errors_with_their_status() {
        let refused = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\n{}";
        let err = read_upgrade(refused).unwrap_err();
        assert_eq!(err.reason(), "http_503");
        let wrong = b"HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: nope\r\n\r\n";
        assert_eq!(read_upgrade(wrong).unwrap_err().reason(), "handshake");
        assert_eq!(
            read_upgrade(b"SSH-2.0\r\n\r\n").unwrap_err().reason(),
            "handshake"
        );
        let endless = vec![b'a'; MAX_HEAD + 1];
        assert_eq!(read_upgrade(&endless).unwrap_err().reason(), "handshake");
    }

    #[test]
    fn frames_of_every_length_encoding_are_split_only_when_complete() {
        for len in [0, 5, 125, 126, 300, 65_535, 65_536, 70_000] {
            let payload = vec![b'x'; len];
            let bytes = server_frame(true, OP_TEXT, &payload);
            for cut in [1, bytes.len() / 2, bytes.len() - 1] {
                if cut < bytes.len() {
                    assert_eq!(next_frame(&bytes[..cut], 1 << 20), Ok(None), "{len}/{cut}");
                }
            }
            let frame = next_frame(&bytes, 1 << 20).unwrap().unwrap();
            assert_eq!(&bytes[frame.payload.0..frame.payload.1], &payload[..]);
            assert_eq!(frame.len(), bytes.len());
        }
    }

    #[test]
    fn protocol_breaches_and_oversized_frames_are_refused() {
        let too_big = server_frame(true, OP_TEXT, &[b'x'; 200]);
        assert!(next_frame(&too_big, 100).is_err());
        let masked = [0x81, 0x80 | 1, 0, 0, 0, 0, b'x'];
        assert!(next_frame(&masked, 100).is_err());
        let reserved = [0x81 | 0x40, 0];
        assert!(next_frame(&reserved, 100).is_err());
        let long_ping = server_frame(true, OP_PING, &[0; 126]);
        assert!(next_frame(&long_ping, 1000).is_err());
        let fragmented_close = server_frame(false, OP_CLOSE, &[3, 232]);
        assert!(next_frame(&fragmented_close, 100).is_err());
        assert!(next_frame(&server_frame(true, 0x3, b""), 100).is_err());
    }

    #[test]
    fn client_frames_are_masked_and_read_back_by_actix() {
        use actix_http::ws::{Codec, Frame as WsFrame};
        use tokio_util::codec::Decoder;
        let ack = br#"{"type":"ack","seq":12345}"#;
        let mut out = Vec::new();
        push_frame(&mut out, OP_TEXT, ack);
        push_frame(&mut out, OP_CLOSE, &1000u16.to_be_bytes());
        let mut buf = bytes::BytesMut::from(&out[..]);
        let mut codec = Codec::new();
        match codec.decode(&mut buf).unwrap() {
            Some(WsFrame::Text(text)) => assert_eq!(&text[..], ack),
            other => panic!("{other:?}"),
        }
        match codec.decode(&mut buf).unwrap() {
            Some(WsFrame::Close(Some(reason))) => assert_eq!(u16::from(reason.code), 1000),
            other => panic!("{other:?}"),
        }
        assert_eq!(close_code(&[3, 232, b'x']), Some(1000));
        assert_eq!(close_code(&[]), None);
    }
}
