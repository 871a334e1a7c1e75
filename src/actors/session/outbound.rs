//! A session's outbound side: the queue of frames waiting for the socket, its budget, and
//! the writer that drains it into the `actix-ws` sink as fast as the socket takes them.
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
//! parks its waker here while there is nothing to write. Closing drops whatever is queued and
//! writes the close frame next.

use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use actix_ws::Message;
use bytes::Bytes;
use bytestring::ByteString;
use futures_util::Sink;

use super::inbound::Gate;
use super::WsSession;
use crate::clock::now_ms;
use crate::frames::{self, CloseReason, Frame};
use crate::metrics::{Counters, QueueGauge, Stage};

/// One frame towards the client.
pub enum Out {
    Text(ByteString),
    /// A message frame of the session's user (spliced when written).
    Message(Frame),
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

/// The queue and the sink it drains into.
pub struct Outbound {
    sink: actix_ws::Session,
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

/// Why the writer stopped.
pub enum Finished {
    /// The close frame was written.
    Closed,
    /// The socket is gone.
    Broken,
}

impl Outbound {
    pub fn new(
        sink: actix_ws::Session,
        budget: Budget,
        gate: Rc<Gate>,
        gauge: Arc<QueueGauge>,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            sink,
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
            self.pong = Some(payload);
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
    fn next_frame(&mut self) -> Option<(Message, bool)> {
        if let Some(p) = self.pong.take() {
            return Some((Message::Pong(p), false));
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
            Out::Text(t) => (Message::Text(t), false),
            Out::Message(f) => {
                if let Some(at) = f.arrived_us() {
                    self.counters.stage(Stage::Socket, at);
                }
                (Message::Text(f.to_text()), false)
            }
            Out::JsonPong => {
                self.json_pong = false;
                (Message::Text(frames::pong()), false)
            }
            Out::Ping => (Message::Ping(Bytes::new()), false),
            Out::Close(r) => (
                Message::Close(Some(actix_ws::CloseReason {
                    code: r.code().into(),
                    description: Some(r.text().into()),
                })),
                true,
            ),
        })
    }

    fn has_frame(&self) -> bool {
        self.pong.is_some() || !self.queue.is_empty()
    }

    /// Writes frames until the socket pushes back or nothing is left; ready once the close
    /// frame was written or the socket broke.
    pub fn poll_write(&mut self, task: &mut Context<'_>) -> Poll<Finished> {
        loop {
            if !self.has_frame() {
                match &self.waker {
                    Some(w) if w.will_wake(task.waker()) => {}
                    _ => self.waker = Some(task.waker().clone()),
                }
                return Poll::Pending;
            }
            match Pin::new(&mut self.sink).poll_ready(task) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return Poll::Ready(Finished::Broken),
                Poll::Ready(Ok(())) => {}
            }
            // unwrap: has_frame was checked above
            let (msg, last) = self.next_frame().unwrap();
            if Pin::new(&mut self.sink).start_send(msg).is_err() {
                return Poll::Ready(Finished::Broken);
            }
            if last {
                return Poll::Ready(Finished::Closed);
            }
        }
    }
}

/// Drives [`Outbound::poll_write`] inside the session's own task (no extra task per
/// socket); stops the actor once the close frame is out or the socket broke.
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
            Poll::Ready(Finished::Closed | Finished::Broken) => {
                ctx.stop();
                Poll::Ready(())
            }
        }
    }
}
