//! A session's inbound side: the WebSocket frame reader over the socket, and the gate that
//! stops it while the outbound queue is full.
//!
//! The reader decodes after every chunk it reads (at most [`READ_CHUNK`] bytes): a header
//! declaring more than `max_frame_bytes` is refused before any of its payload is read, and
//! the buffer never holds more than one chunk plus one frame. It holds nothing between
//! frames: an idle session keeps no read buffer. While the gate is shut it neither decodes
//! nor reads, so a client that sends and never reads waits on its own TCP window instead of
//! growing the session's replies.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use actix_codec::Decoder;
use actix_http::ws::{Codec, Frame, Message, ProtocolError};
use bytes::BytesMut;
use bytestring::ByteString;
use futures_util::Stream;
use tokio::io::{AsyncRead, ReadBuf};

use super::socket::Socket;

/// Most bytes taken from the socket per read.
pub const READ_CHUNK: usize = 4096;

/// Shared by the reader and the outbound queue: shut while the queue is full.
#[derive(Default)]
pub struct Gate {
    shut: Cell<bool>,
    /// The reader, parked while the gate is shut.
    waiter: Cell<Option<Waker>>,
}

impl Gate {
    /// Stops reading once the frame being handled is done.
    pub fn shut(&self) {
        self.shut.set(true);
    }

    /// Lets the reader go on.
    pub fn open(&self) {
        if self.shut.replace(false) {
            if let Some(w) = self.waiter.take() {
                w.wake();
            }
        }
    }

    pub fn is_shut(&self) -> bool {
        self.shut.get()
    }

    fn park(&self, waker: &Waker) {
        self.waiter.set(Some(waker.clone()));
    }
}

/// Client frames, decoded one chunk at a time.
pub struct Inbound<R = Socket> {
    source: R,
    buf: BytesMut,
    codec: Codec,
    gate: Rc<Gate>,
    max_frame_bytes: usize,
    /// The client closed its side: nothing more comes.
    done: bool,
    /// A protocol error was returned: nothing more is read, and the stream does not end
    /// (the session is closing, and ending it would stop the session before the close
    /// frame is out).
    failed: bool,
}

impl<R> Inbound<R> {
    /// A reader of `source`; `early` holds bytes that arrived with the upgrade request.
    pub fn new(source: R, early: BytesMut, max_frame_bytes: usize, gate: Rc<Gate>) -> Self {
        Self {
            source,
            buf: early,
            codec: Codec::new().max_size(max_frame_bytes),
            gate,
            max_frame_bytes,
            done: false,
            failed: false,
        }
    }

    /// The next whole frame in the buffer, if one is there. The buffer always starts at a
    /// frame boundary; the codec checks the size only once a whole frame has arrived, so the
    /// declared length is checked here first.
    fn decode(&mut self) -> Result<Option<Message>, ProtocolError> {
        if declared_len(&self.buf).is_some_and(|n| n > self.max_frame_bytes as u64) {
            return Err(ProtocolError::Overflow);
        }
        let Some(frame) = self.codec.decode(&mut self.buf)? else {
            return Ok(None);
        };
        if self.buf.is_empty() {
            // Let the allocation go with the frame: an idle session holds no buffer.
            self.buf = BytesMut::new();
        }
        Ok(Some(match frame {
            Frame::Text(bytes) => ByteString::try_from(bytes)
                .map(Message::Text)
                .map_err(|e| ProtocolError::Io(io::Error::new(io::ErrorKind::InvalidData, e)))?,
            Frame::Binary(bytes) => Message::Binary(bytes),
            Frame::Ping(bytes) => Message::Ping(bytes),
            Frame::Pong(bytes) => Message::Pong(bytes),
            Frame::Close(reason) => Message::Close(reason),
            Frame::Continuation(item) => Message::Continuation(item),
        }))
    }
}

/// The payload length declared by the frame header at the start of `buf` (RFC 6455 5.2:
/// 7 bits, or 126 then 16 bits, or 127 then 64 bits); `None` until those bytes arrived.
fn declared_len(buf: &[u8]) -> Option<u64> {
    match *buf.get(1)? & 0x7f {
        126 => Some(u64::from(u16::from_be_bytes(
            buf.get(2..4)?.try_into().ok()?,
        ))),
        127 => Some(u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)),
        n => Some(u64::from(n)),
    }
}

impl<R: AsyncRead + Unpin> Stream for Inbound<R> {
    type Item = Result<Message, ProtocolError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if this.failed {
                return Poll::Pending;
            }
            if this.gate.is_shut() {
                this.gate.park(cx.waker());
                return Poll::Pending;
            }
            match this.decode() {
                Ok(Some(msg)) => return Poll::Ready(Some(Ok(msg))),
                Ok(None) => {}
                Err(e) => {
                    this.failed = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.source).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => this.done = true,
                Poll::Ready(Ok(())) => this.buf.extend_from_slice(read.filled()),
                Poll::Ready(Err(e)) => {
                    this.failed = true;
                    return Poll::Ready(Some(Err(ProtocolError::Io(e))));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use actix_codec::Encoder;
    use bytes::Bytes;
    use futures_util::task::noop_waker_ref;

    use super::*;

    /// Masked client frames, as a browser sends them.
    fn client_frames(msgs: Vec<Message>) -> Bytes {
        let mut codec = Codec::new().client_mode();
        let mut buf = BytesMut::new();
        for m in msgs {
            codec.encode(m, &mut buf).unwrap();
        }
        buf.freeze()
    }

    /// A socket delivering `chunks` one per read (each at most [`READ_CHUNK`] bytes), then
    /// the end of the stream; counts the reads that returned data.
    struct Chunks {
        chunks: std::collections::VecDeque<Bytes>,
        taken: Arc<AtomicUsize>,
    }

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(mut c) = self.chunks.pop_front() {
                let n = c.len().min(buf.remaining());
                buf.put_slice(&c.split_to(n));
                if !c.is_empty() {
                    self.chunks.push_front(c);
                }
                self.taken.fetch_add(1, Ordering::Relaxed);
            }
            Poll::Ready(Ok(()))
        }
    }

    fn payload(chunks: Vec<Bytes>, taken: Arc<AtomicUsize>) -> Chunks {
        Chunks {
            chunks: chunks.into(),
            taken,
        }
    }

    fn poll(inbound: &mut Inbound<Chunks>) -> Poll<Option<Result<Message, ProtocolError>>> {
        let mut cx = Context::from_waker(noop_waker_ref());
        Pin::new(inbound).poll_next(&mut cx)
    }

    #[test]
    fn declared_lengths_are_read_from_all_three_header_forms() {
        assert_eq!(declared_len(&[0x81]), None);
        assert_eq!(declared_len(&[0x81, 0x85]), Some(5));
        assert_eq!(declared_len(&[0x81, 0xFE, 0x01]), None);
        assert_eq!(declared_len(&[0x81, 0xFE, 0x01, 0x00]), Some(256));
        assert_eq!(declared_len(&[0x81, 0xFF, 0, 0, 0, 1, 0, 0, 0]), None);
        assert_eq!(
            declared_len(&[0x81, 0xFF, 0, 0, 1, 0, 0, 0, 0, 0]),
            Some(1 << 40)
        );
    }

    #[test]
    fn a_header_declaring_more_than_the_limit_is_refused_before_its_payload_is_read() {
        // A 64-bit length header (opcode text, masked) declaring 1 TiB, then data chunks.
        let mut header = vec![0x81, 0xFF];
        header.extend_from_slice(&(1u64 << 40).to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        let taken = Arc::new(AtomicUsize::new(0));
        let mut chunks = vec![Bytes::from(header)];
        chunks.extend((0..100).map(|_| Bytes::from(vec![0u8; 64 * 1024])));
        let mut inbound = Inbound::new(
            payload(chunks, taken.clone()),
            BytesMut::new(),
            16 * 1024,
            Rc::default(),
        );
        assert!(matches!(
            poll(&mut inbound),
            Poll::Ready(Some(Err(ProtocolError::Overflow)))
        ));
        assert_eq!(taken.load(Ordering::Relaxed), 1, "only the header was read");
        assert!(poll(&mut inbound).is_pending(), "nothing more is read");
        assert_eq!(taken.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn frames_split_across_chunks_and_several_in_one_chunk_are_all_decoded_in_order() {
        let bytes = client_frames(vec![
            Message::Text("one".into()),
            Message::Ping(Bytes::from_static(b"p")),
            Message::Text("three".into()),
        ]);
        let chunks = vec![bytes.slice(..4), bytes.slice(4..)];
        let mut inbound = Inbound::new(
            payload(chunks, Arc::default()),
            BytesMut::new(),
            1024,
            Rc::default(),
        );
        let mut got = Vec::new();
        while let Poll::Ready(Some(item)) = poll(&mut inbound) {
            got.push(item.unwrap());
        }
        assert!(
            matches!(&got[..], [Message::Text(a), Message::Ping(_), Message::Text(c)]
            if a == "one" && c == "three")
        );
    }

    #[test]
    fn a_reader_holds_no_buffer_between_frames_but_keeps_a_partial_one() {
        let bytes = client_frames(vec![
            Message::Text("one".into()),
            Message::Text("two".into()),
        ]);
        let cut = bytes.len() - 2;
        let chunks = vec![bytes.slice(..cut), bytes.slice(cut..)];
        let mut inbound = Inbound::new(
            payload(chunks, Arc::default()),
            BytesMut::new(),
            1024,
            Rc::default(),
        );
        assert!(
            matches!(poll(&mut inbound), Poll::Ready(Some(Ok(Message::Text(t)))) if t == "one")
        );
        assert!(
            inbound.buf.capacity() > 0,
            "the second frame's start is kept"
        );
        assert!(
            matches!(poll(&mut inbound), Poll::Ready(Some(Ok(Message::Text(t)))) if t == "two")
        );
        assert_eq!(inbound.buf.capacity(), 0, "nothing is held once idle");
    }

    #[test]
    fn bytes_that_came_with_the_upgrade_request_are_decoded_first() {
        let early = client_frames(vec![Message::Text("early".into())]);
        let later = client_frames(vec![Message::Text("later".into())]);
        let mut inbound = Inbound::new(
            payload(vec![later], Arc::default()),
            BytesMut::from(&early[..]),
            1024,
            Rc::default(),
        );
        assert!(
            matches!(poll(&mut inbound), Poll::Ready(Some(Ok(Message::Text(t)))) if t == "early")
        );
        assert!(
            matches!(poll(&mut inbound), Poll::Ready(Some(Ok(Message::Text(t)))) if t == "later")
        );
        assert!(matches!(poll(&mut inbound), Poll::Ready(None)));
    }

    #[test]
    fn a_shut_gate_stops_decoding_and_reading_until_it_opens() {
        let bytes = client_frames(vec![Message::Text("a".into()), Message::Text("b".into())]);
        let taken = Arc::new(AtomicUsize::new(0));
        let gate = Rc::new(Gate::default());
        let mut inbound = Inbound::new(
            payload(vec![bytes], taken.clone()),
            BytesMut::new(),
            1024,
            gate.clone(),
        );
        assert!(matches!(
            poll(&mut inbound),
            Poll::Ready(Some(Ok(Message::Text(_))))
        ));
        gate.shut();
        assert!(poll(&mut inbound).is_pending());
        assert!(poll(&mut inbound).is_pending());
        gate.open();
        assert!(matches!(poll(&mut inbound), Poll::Ready(Some(Ok(Message::Text(t)))) if t == "b"));
        assert_eq!(taken.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn text_that_is_not_utf8_is_a_protocol_error() {
        let bytes = client_frames(vec![Message::Binary(Bytes::from_static(&[0xff]))]);
        // Turn the binary opcode (0x82) into text (0x81).
        let mut raw = bytes.to_vec();
        raw[0] = 0x81;
        let mut inbound = Inbound::new(
            payload(vec![Bytes::from(raw)], Arc::default()),
            BytesMut::new(),
            1024,
            Rc::default(),
        );
        assert!(matches!(
            poll(&mut inbound),
            Poll::Ready(Some(Err(ProtocolError::Io(_))))
        ));
    }
}
