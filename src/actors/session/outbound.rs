//! A session's outbound side: the queue of frames waiting for the socket, its budget, and
//! the writer that drains it into the socket as fast as the socket takes them.
//!
//! Every frame counts against one budget of frames (`session.outbound_queue`) and bytes
//! (`session.outbound_bytes`): live and replayed messages, broadcasts, error replies. A
//! frame always fits an empty queue. Once the queue is full the [`Gate`] stops the reader,
//! so a client that keeps sending and never reads waits on its own TCP window; it opens
//! again once the queue has drained to half. At most one pong of each kind waits: the
//! WebSocket pong answers the latest ping (RFC 6455 5.5.3) ahead of the queue, and a second
//! `{"type":"ping"}` while a `{"type":"pong"}` is queued adds nothing.
//!
//! The writer is polled inside the session actor's own task (no second task, no lock), and
//! parks its waker here while there is nothing to write. Each time it runs it encodes every
//! queued frame (up to [`WRITE_CHUNK`] bytes) into one per-thread scratch buffer and hands
//! them to the socket in one write, so frames that arrived together leave together; only
//! bytes the socket did not take are copied into the session's own buffer, which is
//! released once they are out. Closing drops whatever is queued and writes the close frame
//! next, then ends the sending side of the socket.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use actix_codec::Encoder;
use actix_http::ws::{Codec, Message};
use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;

use super::inbound::Gate;
use super::socket::Socket;
use super::WsSession;
use crate::clock::now_ms;
use crate::frames::wire::Encoded;
use crate::frames::{self, CloseReason, Frame};
use crate::metrics::{Counters, QueueGauge, Stage};

/// One frame towards the client.
pub enum Out {
    Text(ByteString),
    /// A message frame of the session's user (spliced when written).
    Message(Frame),
    /// Frames encoded once for many sessions (a broadcast batch), written as they are.
    Encoded(Encoded),
    /// `{"type":"pong"}`, in order with the other replies.
    JsonPong,
    Ping,
    Close(CloseReason),
}

impl Out {
    fn bytes(&self) -> usize {
        match self {
            Out::Text(t) => t.len(),
            Out::Message(f) => f.len(),
            Out::Encoded(e) => e.bytes.len(),
            Out::JsonPong | Out::Ping | Out::Close(_) => 0,
        }
    }
}

/// How much a session may have queued towards its socket.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub frames: usize,
    pub bytes: usize,
}

/// Most bytes encoded for one write.
pub const WRITE_CHUNK: usize = 64 * 1024;

thread_local! {
    /// Where frames are encoded before a write; shared by the sessions of a thread (a
    /// session only keeps the bytes its socket did not take).
    static SCRATCH: RefCell<BytesMut> = RefCell::new(BytesMut::with_capacity(WRITE_CHUNK));
}

/// The queue and the socket it drains into.
pub struct Outbound {
    socket: Socket,
    /// Encoded bytes the socket has not taken yet (empty, unallocated, most of the time).
    unsent: BytesMut,
    /// The close frame is among the bytes written or in `unsent`.
    close_encoded: bool,
    queue: VecDeque<Out>,
    /// Bytes of the queued frames.
    bytes: usize,
    budget: Budget,
    /// Payload of the pong owed for the latest client ping.
    pong: Option<Bytes>,
    /// A `{"type":"pong"}` is queued and not yet written.
    json_pong: bool,
    /// Shut while the queue is full: the reader stops.
    gate: Rc<Gate>,
    /// Waker of the idle writer, woken when there is something to write.
    waker: Option<Waker>,
    /// A close frame is queued: nothing else is accepted.
    closing: bool,
    /// Frames and bytes queued, for the dashboard.
    gauge: Arc<QueueGauge>,
    /// Where a live message's arrival-to-socket latency is recorded.
    counters: Arc<Counters>,
}

/// What the writer puts on the socket next.
enum Wire {
    Frame(Message),
    Encoded(Bytes),
}

/// Why the writer stopped.
pub enum Finished {
    /// The close frame was written.
    Closed,
    /// The socket is gone.
    Broken,
}

impl Outbound {
    pub fn new(
        socket: Socket,
        budget: Budget,
        gate: Rc<Gate>,
        gauge: Arc<QueueGauge>,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            socket,
            unsent: BytesMut::new(),
            close_encoded: false,
            queue: VecDeque::new(),
            bytes: 0,
            budget,
            pong: None,
            json_pong: false,
            gate,
            waker: None,
            closing: false,
            gauge,
            counters,
        }
    }

    fn gauge(&self) {
        self.gauge.set(self.queue.len(), self.bytes, now_ms);
    }

    /// Frames waiting for the socket.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// The queue holds its budget of frames or bytes: nothing more should be read.
    pub fn is_full(&self) -> bool {
        self.queue.len() >= self.budget.frames || self.bytes >= self.budget.bytes
    }

    /// The queue holds more than its budget (beyond the one frame that always fits).
    pub fn is_over(&self) -> bool {
        self.queue.len() > 1
            && (self.queue.len() > self.budget.frames || self.bytes > self.budget.bytes)
    }

    /// Queues a frame (ignored once closing); shuts the reader's gate once full.
    pub fn push(&mut self, out: Out) {
        if self.closing {
            return;
        }
        self.bytes += out.bytes();
        self.queue.push_back(out);
        if self.is_full() {
            self.gate.shut();
        }
        self.gauge();
        self.wake();
    }

    /// Owes a pong for the latest client ping (replacing one not yet written).
    pub fn push_pong(&mut self, payload: Bytes) {
        if !self.closing {
            // A control frame carries at most 125 bytes (RFC 6455 5.5).
            self.pong = Some(payload.slice(..payload.len().min(125)));
            self.wake();
        }
    }

    /// Queues a `{"type":"pong"}` unless one is already waiting.
    pub fn push_json_pong(&mut self) {
        if !self.json_pong && !self.closing {
            self.json_pong = true;
            self.push(Out::JsonPong);
        }
    }

    /// Drops what is queued and queues `notice` (a drain's `reconnect` frame), if any, and
    /// the close frame.
    pub fn close(&mut self, notice: Option<ByteString>, reason: CloseReason) {
        if self.closing {
            return;
        }
        self.queue.clear();
        self.bytes = notice.as_ref().map_or(0, |n| n.len());
        self.queue.extend(notice.map(Out::Text));
        self.pong = None;
        self.json_pong = false;
        self.queue.push_back(Out::Close(reason));
        self.closing = true;
        self.gauge();
        self.wake();
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// The next frame to write: owed pongs first, then the queue.
    fn next_frame(&mut self) -> Option<(Wire, bool)> {
        if let Some(p) = self.pong.take() {
            return Some((Wire::Frame(Message::Pong(p)), false));
        }
        let out = self.queue.pop_front()?;
        self.bytes -= out.bytes();
        self.gauge();
        if self.gate.is_shut()
            && self.queue.len() <= self.budget.frames / 2
            && self.bytes <= self.budget.bytes / 2
        {
            self.gate.open();
        }
        Some(match out {
            Out::Encoded(e) => (Wire::Encoded(e.bytes), false),
            Out::Text(t) => (Wire::Frame(Message::Text(t)), false),
            Out::Message(f) => {
                if let Some(at) = f.arrived_us() {
                    self.counters.stage(Stage::Socket, at);
                }
                (Wire::Frame(Message::Text(f.to_text())), false)
            }
            Out::JsonPong => {
                self.json_pong = false;
                (Wire::Frame(Message::Text(frames::pong())), false)
            }
            Out::Ping => (Wire::Frame(Message::Ping(Bytes::new())), false),
            Out::Close(r) => (
                Wire::Frame(Message::Close(Some(actix_http::ws::CloseReason {
                    code: r.code().into(),
                    description: Some(r.text().into()),
                }))),
                true,
            ),
        })
    }

    fn has_frame(&self) -> bool {
        !self.close_encoded && (self.pong.is_some() || !self.queue.is_empty())
    }

    /// Encodes queued frames into `buf`, up to [`WRITE_CHUNK`] bytes or the close frame.
    fn encode(&mut self, buf: &mut BytesMut) {
        let mut codec = Codec::new();
        while buf.len() < WRITE_CHUNK && self.has_frame() {
            // unwrap: has_frame was checked
            let (wire, last) = self.next_frame().unwrap();
            match wire {
                // Server frames are never masked and every message kind encodes: it cannot
                // fail.
                Wire::Frame(msg) => {
                    let _ = codec.encode(msg, buf);
                }
                Wire::Encoded(bytes) => buf.extend_from_slice(&bytes),
            }
            if last {
                self.close_encoded = true;
            }
        }
    }

    /// Writes what `unsent` holds; ready once it is all out.
    fn flush_unsent(&mut self, task: &mut Context<'_>) -> Poll<Result<(), Finished>> {
        while !self.unsent.is_empty() {
            match self.socket.poll_write(task, &self.unsent) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(Err(Finished::Broken)),
                Poll::Ready(Ok(n)) => self.unsent.advance(n),
            }
        }
        // Let the allocation go: an idle session keeps no write buffer.
        self.unsent = BytesMut::new();
        Poll::Ready(Ok(()))
    }

    /// Writes frames until the socket pushes back or nothing is left; ready once the close
    /// frame was written (and the sending side ended) or the socket broke.
    pub fn poll_write(&mut self, task: &mut Context<'_>) -> Poll<Finished> {
        loop {
            match self.flush_unsent(task) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(f)) => return Poll::Ready(f),
                Poll::Ready(Ok(())) => {}
            }
            if self.close_encoded {
                self.socket.shutdown_write();
                return Poll::Ready(Finished::Closed);
            }
            if !self.has_frame() {
                match &self.waker {
                    Some(w) if w.will_wake(task.waker()) => {}
                    _ => self.waker = Some(task.waker().clone()),
                }
                return Poll::Pending;
            }
            let written = SCRATCH.with(|scratch| {
                let mut buf = scratch.borrow_mut();
                buf.clear();
                self.encode(&mut buf);
                match self.socket.poll_write(task, &buf) {
                    Poll::Ready(Ok(0) | Err(_)) => Err(Finished::Broken),
                    Poll::Ready(Ok(n)) => {
                        self.unsent.extend_from_slice(&buf[n..]);
                        Ok(())
                    }
                    Poll::Pending => {
                        self.unsent.extend_from_slice(&buf);
                        Ok(())
                    }
                }
            });
            if let Err(f) = written {
                return Poll::Ready(f);
            }
        }
    }
}

/// Drives [`Outbound::poll_write`] inside the session's own task (no extra task per
/// socket). Once the close frame is out the reader goes on until the client closes its side
/// (or the close grace period ends); a broken socket stops the actor at once.
pub(super) struct Writer;

impl actix::ActorFuture<WsSession> for Writer {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut WsSession,
        ctx: &mut actix::Context<WsSession>,
        task: &mut Context<'_>,
    ) -> Poll<()> {
        use actix::ActorContext;
        match act.out.poll_write(task) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Finished::Closed) => Poll::Ready(()),
            Poll::Ready(Finished::Broken) => {
                ctx.stop();
                Poll::Ready(())
            }
        }
    }
}
