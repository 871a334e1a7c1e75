//! The session's socket, shared by its reader ([`super::inbound`]) and its writer
//! ([`super::outbound`]) inside the one actor task: readiness-based reads and writes on a
//! shared `TcpStream`, so neither side needs a lock, a split or a buffer of its own while
//! the connection is idle.

use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use actix_rt::net::TcpStream;
use tokio::io::{AsyncRead, ReadBuf};

/// One upgraded connection.
#[derive(Clone)]
pub struct Socket(Rc<TcpStream>);

impl Socket {
    pub fn new(stream: TcpStream) -> Self {
        // Frames are small and already coalesced per write: send them at once.
        let _ = stream.set_nodelay(true);
        Self(Rc::new(stream))
    }

    /// Writes as much of `bytes` as the socket takes now; `Pending` (waker registered) when
    /// it takes nothing.
    pub fn poll_write(&self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(bytes) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Writes as much of `bytes` as the socket takes now, without waiting; `WouldBlock`
    /// when it takes nothing.
    pub fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        self.0.try_write(bytes)
    }

    /// Ends the writing side (FIN after what is written): the client learns the close is
    /// complete while its own frames can still be read (closing with unread data would
    /// reset the connection instead).
    pub fn shutdown_write(&self) {
        let _ = socket2::SockRef::from(&*self.0).shutdown(Shutdown::Write);
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}
