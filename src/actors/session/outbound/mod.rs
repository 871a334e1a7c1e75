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
//!
//! A new session starts with the `101` answer to its upgrade waiting in `unsent` and
//! nothing else allowed out until the `welcome` frame is queued: the welcome goes to the
//! front of the queue (frames queued before it, such as a broadcast, follow it, so it is
//! always the first frame), and the `101` leaves in the same write as the welcome. The
//! session lets the `101` go alone if the welcome is slow ([`Outbound::release_answer`]),
//! and closing lets everything go.

mod write;

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Waker};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

pub(super) use self::write::Writer;
pub use self::write::{Finished, Through, WRITE_CHUNK};
use super::inbound::Gate;
use super::socket::Socket;
use crate::clock::now_ms;
use crate::frames::wire::Encoded;
use crate::frames::{CloseReason, Frame};
use crate::metrics::{Counters, QueueGauge};

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
    /// The welcome is queued: frames may go out.
    welcomed: bool,
    /// The upgrade's `101` answer in `unsent` waits for the welcome.
    answer_held: bool,
    /// Frames and bytes queued, for the dashboard.
    gauge: Arc<QueueGauge>,
    /// Where a live message's arrival-to-socket latency is recorded.
    counters: Arc<Counters>,
}

impl Outbound {
    /// `answer`: the upgrade's `101`, written with the welcome.
    pub fn new(
        socket: Socket,
        answer: &[u8],
        budget: Budget,
        gate: Rc<Gate>,
        gauge: Arc<QueueGauge>,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            socket,
            unsent: BytesMut::from(answer),
            close_encoded: false,
            queue: VecDeque::new(),
            bytes: 0,
            budget,
            pong: None,
            json_pong: false,
            gate,
            waker: None,
            closing: false,
            welcomed: false,
            answer_held: !answer.is_empty(),
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

    /// Queues the welcome ahead of every frame queued so far, and lets them all go.
    pub fn welcome(&mut self, frame: ByteString) {
        if self.closing {
            return;
        }
        self.bytes += frame.len();
        self.queue.push_front(Out::Text(frame));
        self.welcomed = true;
        self.answer_held = false;
        self.gauge();
        self.wake();
    }

    /// Lets the `101` answer go without waiting for the welcome any longer.
    pub fn release_answer(&mut self) {
        if self.answer_held {
            self.answer_held = false;
            self.wake();
        }
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
        self.welcomed = true;
        self.answer_held = false;
        self.gauge();
        self.wake();
    }

    /// Keeps the writer's waker for when there is something to write.
    fn park(&mut self, task: &Context<'_>) {
        match &self.waker {
            Some(w) if w.will_wake(task.waker()) => {}
            _ => self.waker = Some(task.waker().clone()),
        }
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    fn has_frame(&self) -> bool {
        !self.close_encoded && self.welcomed && (self.pong.is_some() || !self.queue.is_empty())
    }
}
