//! Text frames encoded once for many sockets: a run of RFC 6455 server frames (unmasked,
//! final, opcode text) in one shared buffer, so a broadcast batch is serialized once and
//! every session writes the same bytes.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::Frame;

/// Already-encoded WebSocket text frames, shared by every session that writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub bytes: Bytes,
    /// How many frames `bytes` holds.
    pub frames: u32,
}

/// `frames` as consecutive server text frames.
pub fn encode_text(frames: &[ByteString]) -> Encoded {
    let len: usize = frames.iter().map(|f| f.len() + header_len(f.len())).sum();
    let mut out = BytesMut::with_capacity(len);
    for f in frames {
        put_header(&mut out, f.len());
        out.put_slice(f.as_bytes());
    }
    Encoded {
        bytes: out.freeze(),
        frames: frames.len() as u32,
    }
}

/// `frame` as one server text frame at the end of `out`, written from its pieces (no
/// spliced copy of the text first).
pub fn put_frame(out: &mut BytesMut, frame: &Frame) {
    let mut seq = itoa::Buffer::new();
    let pieces = frame.pieces(&mut seq);
    // Summed here rather than by `Frame::len`, which would format the seq again.
    let len = pieces.iter().map(|p| p.len()).sum();
    out.reserve(header_len(len) + len);
    put_header(out, len);
    for piece in pieces {
        out.put_slice(piece.as_bytes());
    }
}

fn header_len(payload: usize) -> usize {
    match payload {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

/// FIN + text opcode, then the payload length in the shortest form (RFC 6455 5.2).
fn put_header(out: &mut BytesMut, payload: usize) {
    out.put_u8(0x81);
    match payload {
        0..=125 => out.put_u8(payload as u8),
        126..=65535 => {
            out.put_u8(126);
            out.put_u16(payload as u16);
        }
        _ => {
            out.put_u8(127);
            out.put_u64(payload as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_codec::Decoder;
    use actix_http::ws::{Codec, Frame};

    use super::*;

    #[test]
    fn encoded_frames_decode_back_to_the_same_texts_for_every_length_form() {
        let texts: Vec<ByteString> = [0_usize, 5, 125, 126, 65535, 65536, 70_000]
            .iter()
            .map(|&n| ByteString::from("x".repeat(n)))
            .collect();
        let enc = encode_text(&texts);
        assert_eq!(enc.frames, texts.len() as u32);
        let mut codec = Codec::new().client_mode().max_size(1 << 20);
        let mut buf = BytesMut::from(&enc.bytes[..]);
        for t in &texts {
            match codec.decode(&mut buf).unwrap() {
                Some(Frame::Text(b)) => assert_eq!(&b[..], t.as_bytes()),
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
        assert!(buf.is_empty(), "nothing beyond the frames");
    }

    #[test]
    fn a_message_frame_put_from_its_pieces_decodes_to_its_spliced_text() {
        use crate::frames::MessageParts;
        // Payloads that put the frame in each of the three length forms.
        for n in [10_usize, 200, 70_000] {
            let payload = format!("\"{}\"", "p".repeat(n));
            let parts = MessageParts::new("m-1", Some("t\"q"), &payload, 1_700, 0);
            let frame = parts.frame(42);
            let mut buf = BytesMut::new();
            put_frame(&mut buf, &frame);
            let mut codec = Codec::new().client_mode().max_size(1 << 20);
            match codec.decode(&mut buf).unwrap() {
                Some(Frame::Text(b)) => assert_eq!(&b[..], frame.to_text().as_bytes()),
                other => panic!("expected a text frame, got {other:?}"),
            }
            assert!(buf.is_empty(), "one frame, nothing more");
        }
    }
}
