//! The writer of a session's outbound side: frames encoded into a per-thread scratch buffer
//! and handed to the socket in one write, the bytes it did not take kept for later, and the
//! broadcast lane's write of already encoded frames.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_codec::Encoder;
use actix_http::ws::{Codec, Message};
use bytes::{Buf, Bytes, BytesMut};

use super::{Out, Outbound};
use crate::actors::session::WsSession;
use crate::frames::{self, Frame};
use crate::metrics::Stage;

/// Most bytes encoded for one write.
pub const WRITE_CHUNK: usize = 64 * 1024;

thread_local! {
    /// Where frames are encoded before a write; shared by the sessions of a thread (a
    /// session only keeps the bytes its socket did not take).
    static SCRATCH: RefCell<BytesMut> = RefCell::new(BytesMut::with_capacity(WRITE_CHUNK));
}

/// Most bytes left over from an earlier write that are copied into the next one.
const MERGE_MAX: usize = 4096;

/// What the writer puts on the socket next.
enum Wire {
    Frame(Message),
    /// A message frame, encoded from its shared pieces straight into the write buffer.
    Message(Frame),
    Encoded(Bytes),
}

/// What [`Outbound::write_through`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Through {
    /// Written, or what the socket did not take left to the writer.
    Written,
    /// Closing: dropped, as the session drops every frame once it closes.
    Closing,
    /// Frames or bytes wait ahead: nothing done (the caller uses the mailbox).
    Busy,
}

/// Why the writer stopped.
pub enum Finished {
    /// The close frame was written.
    Closed,
    /// The socket is gone.
    Broken,
}

impl Outbound {
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
                (Wire::Message(f), false)
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

    /// Writes already encoded frames to the socket now when nothing waits ahead of them
    /// (the broadcast lane); the writer is woken only for what the socket did not take.
    pub fn write_through(&mut self, bytes: &Bytes) -> Through {
        if self.closing {
            return Through::Closing;
        }
        if !self.welcomed || self.has_frame() || !self.unsent.is_empty() {
            return Through::Busy;
        }
        match self.socket.try_write(bytes) {
            Ok(n) if n == bytes.len() => {}
            Ok(n) => {
                self.unsent.extend_from_slice(&bytes[n..]);
                self.wake();
            }
            // Full or broken: the writer waits for room or finds the error.
            Err(_) => {
                self.unsent.extend_from_slice(bytes);
                self.wake();
            }
        }
        Through::Written
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
                Wire::Message(frame) => frames::wire::put_frame(buf, &frame),
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
            if self.answer_held {
                self.park(task);
                return Poll::Pending;
            }
            // A few bytes left over (the upgrade's answer, the rest of a frame) go out in
            // the same write as the frames queued behind them.
            let merge =
                !self.unsent.is_empty() && self.unsent.len() <= MERGE_MAX && self.has_frame();
            if !merge {
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
                    self.park(task);
                    return Poll::Pending;
                }
            }
            let written = SCRATCH.with(|scratch| {
                let mut buf = scratch.borrow_mut();
                buf.clear();
                if merge {
                    // Taken, not cleared: an idle session keeps no write buffer.
                    buf.extend_from_slice(&std::mem::take(&mut self.unsent));
                }
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
/// (or the close grace period ends); a broken socket stops the actor at once. While the
/// upgrade's answer waits for the welcome it also keeps the timer that lets the answer go
/// alone (dropped once the answer is out).
pub(in crate::actors::session) struct Writer {
    hold: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Writer {
    /// A writer that lets the answer go alone after `hold`.
    pub fn new(hold: std::time::Duration) -> Self {
        Self {
            hold: Some(Box::pin(tokio::time::sleep(hold))),
        }
    }
}

impl actix::ActorFuture<WsSession> for Writer {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut WsSession,
        ctx: &mut actix::Context<WsSession>,
        task: &mut Context<'_>,
    ) -> Poll<()> {
        use actix::ActorContext;
        let this = self.get_mut();
        let mut out = act.out.borrow_mut();
        if let Some(hold) = &mut this.hold {
            if !out.answer_held || hold.as_mut().poll(task).is_ready() {
                out.release_answer();
                this.hold = None;
            }
        }
        match out.poll_write(task) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Finished::Closed) => Poll::Ready(()),
            Poll::Ready(Finished::Broken) => {
                ctx.stop();
                Poll::Ready(())
            }
        }
    }
}
