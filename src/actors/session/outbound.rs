//! A session's outbound side: the queue of frames waiting for the socket, and the writer that
//! drains it into the `actix-ws` sink as fast as the socket takes them.
//!
//! The writer is polled inside the session actor's own task (no second task, no lock), and
//! parks its waker here while the queue is empty. Closing drops whatever is queued and writes
//! the close frame next.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use actix_ws::Message;
use bytes::Bytes;
use bytestring::ByteString;
use futures_util::Sink;

use super::WsSession;
use crate::frames::CloseReason;

/// One frame towards the client.
pub enum Out {
    Text(ByteString),
    Ping,
    Pong(Bytes),
    Close(CloseReason),
}

/// The queue and the sink it drains into.
pub struct Outbound {
    sink: actix_ws::Session,
    queue: VecDeque<Out>,
    /// Waker of the idle writer, woken when the queue gains a frame.
    waker: Option<Waker>,
    /// A close frame is queued: nothing else is accepted.
    closing: bool,
}

/// Why the writer stopped.
pub enum Finished {
    /// The close frame was written.
    Closed,
    /// The socket is gone.
    Broken,
}

impl Outbound {
    pub fn new(sink: actix_ws::Session) -> Self {
        Self {
            sink,
            queue: VecDeque::new(),
            waker: None,
            closing: false,
        }
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

    /// Queues a frame (ignored once closing).
    pub fn push(&mut self, out: Out) {
        if self.closing {
            return;
        }
        self.queue.push_back(out);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Drops what is queued and queues the close frame.
    pub fn close(&mut self, reason: CloseReason) {
        if self.closing {
            return;
        }
        self.queue.clear();
        self.queue.push_back(Out::Close(reason));
        self.closing = true;
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Writes queued frames until the socket pushes back or the queue is empty; ready once
    /// the close frame was written or the socket broke.
    pub fn poll_write(&mut self, task: &mut Context<'_>) -> Poll<Finished> {
        loop {
            if self.queue.is_empty() {
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
            // unwrap: the queue was checked to be non-empty above
            let (msg, last) = match self.queue.pop_front().unwrap() {
                Out::Text(t) => (Message::Text(t), false),
                Out::Ping => (Message::Ping(Bytes::new()), false),
                Out::Pong(b) => (Message::Pong(b), false),
                Out::Close(r) => (
                    Message::Close(Some(actix_ws::CloseReason {
                        code: r.code().into(),
                        description: Some(r.text().into()),
                    })),
                    true,
                ),
            };
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
