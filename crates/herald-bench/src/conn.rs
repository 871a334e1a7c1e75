//! One client WebSocket of a bench worker: open it (socket, source address, upgrade),
//! read frames and hand text to the worker's counters (`shared.rs`), ack and close when
//! told to. Never decides when to connect or finish.
//!
//! Each connection is a bare task holding its socket, a 2 KiB read buffer (grown only for
//! a larger frame), a finish signal and its highest seq; the wire format is [`wire`]'s.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::setsockopt;
use nix::sys::socket::sockopt::IpBindAddressNoPort;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

use super::protocol::bump;
use super::shared::Shared;
use super::wire::{self, WireError};

/// How long finishing connections may take to ack and close.
pub const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// Read buffer per connection: frames are a few hundred bytes.
const READ_BUFFER: usize = 2048;
/// A read is tried only with at least this much free space in the buffer.
const MIN_READ: usize = 512;
/// Largest frame payload (and reassembled message) accepted, far above the server's
/// default payload limit.
const MAX_PAYLOAD: usize = 1 << 20;
/// errno values that deserve their own reason.
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;
const EADDRINUSE: i32 = 98;
const EADDRNOTAVAIL: i32 = 99;

fn io_reason(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(EMFILE) => "fd_limit".into(),
        Some(ENFILE) => "system_fd_limit".into(),
        Some(EADDRINUSE) | Some(EADDRNOTAVAIL) => "no_source_port".into(),
        _ => match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "refused".into(),
            std::io::ErrorKind::ConnectionReset => "reset".into(),
            std::io::ErrorKind::TimedOut => "timeout".into(),
            kind => format!("io_{kind:?}").to_lowercase(),
        },
    }
}

/// Source address of connection `user`: 127.0.0.2, .3, … round-robin, so each address
/// needs at most its share of the ephemeral ports. IPv6 targets use the default source.
pub fn source_addr(user: u64, addrs: u8, target: SocketAddr) -> Option<SocketAddr> {
    target.is_ipv4().then(|| {
        let last = 2 + (user % u64::from(addrs.clamp(1, 250))) as u8;
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), 0)
    })
}

/// Opens one WebSocket: socket, bind, TCP connect, upgrade request, `101` answer. The
/// reader keeps whatever arrived after the `101` (the server's `welcome`).
async fn open(c: &Conn) -> Result<(TcpStream, Reader), (String, String)> {
    let io = |e: std::io::Error| (io_reason(&e), e.to_string());
    let socket = if c.target.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(io)?;
    if let Some(src) = c.source {
        // Without this, bind(addr:0) reserves a port by scanning the ephemeral range for
        // one free on that address: with 10 000 sockets bound that scan is ~90 % of the
        // worker's CPU. With it the port is picked at connect time, unique per 4-tuple.
        setsockopt(&socket, IpBindAddressNoPort, &true).map_err(|e| io(std::io::Error::from(e)))?;
        socket.bind(src).map_err(io)?;
    }
    let mut stream = socket.connect(c.target).await.map_err(io)?;
    stream.set_nodelay(true).map_err(io)?;
    let request = wire::upgrade_request(&c.target.to_string(), &c.path);
    stream.write_all(&request).await.map_err(io)?;
    let mut reader = Reader::new();
    loop {
        reader.make_room();
        if stream.read_buf(&mut reader.buf).await.map_err(io)? == 0 {
            return Err(("eof".into(), "closed before answering the upgrade".into()));
        }
        let wire = |e: WireError| (e.reason(), e.to_string());
        if let Some(head) = wire::read_upgrade(&reader.buf).map_err(wire)? {
            reader.start = head;
            return Ok((stream, reader));
        }
    }
}

/// Bytes read from one connection and not yet handled, and a fragmented message being
/// put together.
struct Reader {
    buf: Vec<u8>,
    /// Where the unhandled bytes start.
    start: usize,
    /// Opcode and bytes of a message whose last fragment has not arrived.
    partial: Option<(u8, Vec<u8>)>,
}

impl Reader {
    fn new() -> Reader {
        Reader {
            buf: Vec::with_capacity(READ_BUFFER),
            start: 0,
            partial: None,
        }
    }

    /// Leaves at least [`MIN_READ`] bytes free at the end of the buffer, moving the
    /// unhandled bytes to its front first.
    fn make_room(&mut self) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 0 && self.buf.capacity() - self.buf.len() < MIN_READ {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.capacity() - self.buf.len() < MIN_READ {
            self.buf.reserve(READ_BUFFER);
        }
    }

    /// Handles every complete frame in the buffer: messages go to `shared`, pongs for
    /// pings are appended to `out`. Returns the reason when the server closed the session.
    fn handle_frames(
        &mut self,
        shared: &Shared,
        last_seq: &mut u64,
        out: &mut Vec<u8>,
    ) -> Result<Option<String>, WireError> {
        while let Some(frame) = wire::next_frame(&self.buf[self.start..], MAX_PAYLOAD)? {
            let (from, to) = (self.start + frame.payload.0, self.start + frame.payload.1);
            self.start += frame.len();
            let payload = &self.buf[from..to];
            match (frame.opcode, frame.fin, &mut self.partial) {
                (wire::OP_PING, ..) => wire::push_frame(out, wire::OP_PONG, payload),
                (wire::OP_PONG, ..) => {}
                (wire::OP_CLOSE, ..) => {
                    let code = wire::close_code(payload);
                    wire::push_frame(out, wire::OP_CLOSE, &code.unwrap_or(1000).to_be_bytes());
                    return Ok(Some(code.map_or("close".into(), |c| format!("close_{c}"))));
                }
                (wire::OP_CONTINUATION, fin, Some((_, parts))) => {
                    if parts.len() + payload.len() > MAX_PAYLOAD {
                        return Err(WireError::Protocol("fragmented message too large".into()));
                    }
                    parts.extend_from_slice(payload);
                    if fin {
                        // unwrap: matched Some above
                        let (opcode, parts) = self.partial.take().unwrap();
                        if opcode == wire::OP_TEXT {
                            handle_text(shared, &parts, last_seq)?;
                        }
                    }
                }
                (wire::OP_CONTINUATION, _, None) => {
                    return Err(WireError::Protocol("continuation without a start".into()));
                }
                (_, _, Some(_)) => {
                    return Err(WireError::Protocol(
                        "new message inside a fragmented one".into(),
                    ));
                }
                (opcode, false, None) => self.partial = Some((opcode, payload.to_vec())),
                (wire::OP_TEXT, true, None) => handle_text(shared, payload, last_seq)?,
                // Binary messages are not the server's; skipped.
                (_, true, None) => {}
            }
        }
        Ok(None)
    }
}

fn handle_text(shared: &Shared, payload: &[u8], last_seq: &mut u64) -> Result<(), WireError> {
    let text = std::str::from_utf8(payload)
        .map_err(|_| WireError::Protocol("text frame is not UTF-8".into()))?;
    shared.on_text(text, last_seq);
    Ok(())
}

/// What a connection task needs besides its socket.
pub struct Conn {
    pub user: u64,
    /// Path and query of the upgrade request (`/ws?token=…`).
    pub path: String,
    pub target: SocketAddr,
    pub source: Option<SocketAddr>,
    pub handshake_timeout: Duration,
}

/// Reads from an open connection until told to finish or the server ends it; returns why
/// the server ended it, `None` when told to finish.
async fn read_until_finished(
    stream: &mut TcpStream,
    reader: &mut Reader,
    shared: &Shared,
    last_seq: &mut u64,
    finish: &mut watch::Receiver<bool>,
) -> Option<String> {
    let mut out = Vec::new();
    // One finish future for the whole loop: re-creating it per read costs a waker
    // registration each time.
    let finished = finish.changed();
    tokio::pin!(finished);
    loop {
        let handled = reader.handle_frames(shared, last_seq, &mut out);
        if !out.is_empty() {
            let _ = stream.write_all(&out).await;
            out.clear();
        }
        match handled {
            Ok(None) => {}
            Ok(Some(reason)) => return Some(reason),
            Err(e) => return Some(e.reason()),
        }
        reader.make_room();
        tokio::select! {
            biased;
            _ = &mut finished => return None,
            read = stream.read_buf(&mut reader.buf) => match read {
                Ok(0) => return Some("eof".into()),
                Ok(_) => {}
                Err(e) => return Some(io_reason(&e)),
            }
        }
    }
}

/// Acks `last_seq` (when above 0), closes, and reads until the server closes too.
async fn ack_and_close(stream: &mut TcpStream, reader: &mut Reader, last_seq: u64) {
    let mut out = Vec::new();
    if last_seq > 0 {
        let ack = format!(r#"{{"type":"ack","seq":{last_seq}}}"#);
        wire::push_frame(&mut out, wire::OP_TEXT, ack.as_bytes());
    }
    wire::push_frame(&mut out, wire::OP_CLOSE, &1000u16.to_be_bytes());
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        stream.write_all(&out).await?;
        loop {
            reader.make_room();
            if stream.read_buf(&mut reader.buf).await? == 0 {
                return Ok::<_, std::io::Error>(());
            }
            reader.start = reader.buf.len();
        }
    })
    .await;
}

/// One connection for its whole life: connect, read until told to finish (then ack the
/// highest seq and close) or until the server ends it (counted as a disconnect).
pub async fn connection(
    c: Conn,
    shared: Arc<Shared>,
    permit: tokio::sync::OwnedSemaphorePermit,
    mut finish: watch::Receiver<bool>,
) {
    let started = std::time::Instant::now();
    let opened = tokio::time::timeout(c.handshake_timeout, open(&c)).await;
    drop(permit);
    let (mut stream, mut reader) = match opened {
        Ok(Ok(open)) => {
            let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            // unwrap: see Shared::connect_failed
            shared.latency.lock().unwrap().handshake.record(took);
            open
        }
        Ok(Err((reason, detail))) => {
            shared.connect_failed(c.user, &reason, &detail);
            shared.live_tasks.fetch_sub(1, Relaxed);
            return;
        }
        Err(_) => {
            shared.connect_failed(c.user, "timeout", "handshake took too long");
            shared.live_tasks.fetch_sub(1, Relaxed);
            return;
        }
    };
    shared.connected.fetch_add(1, Relaxed);
    shared.open.fetch_add(1, Relaxed);
    let mut last_seq = 0u64;
    let ended_by_server = read_until_finished(
        &mut stream,
        &mut reader,
        &shared,
        &mut last_seq,
        &mut finish,
    )
    .await;
    shared.open.fetch_sub(1, Relaxed);
    match ended_by_server {
        Some(reason) => {
            // unwrap: see Shared::connect_failed
            bump(&mut shared.disconnects.lock().unwrap(), &reason, 1);
        }
        None => ack_and_close(&mut stream, &mut reader, last_seq).await,
    }
    shared.live_tasks.fetch_sub(1, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald::frames::MessageParts;
    use wire::server_frame;

    #[test]
    fn fragments_are_joined_pings_answered_and_a_close_ends_the_session() {
        let shared = Shared::new(0, 42, None);
        let parts = MessageParts::new("id1", None, r#"{"t":1,"r":42}"#, 1, 0);
        let text = parts.frame(5).to_string();
        let (head, tail) = text.as_bytes().split_at(10);
        let mut reader = Reader::new();
        for bytes in [
            server_frame(false, wire::OP_TEXT, head),
            server_frame(true, wire::OP_PING, b"hb"),
            server_frame(true, wire::OP_CONTINUATION, tail),
            server_frame(true, wire::OP_CLOSE, &4001u16.to_be_bytes()),
        ] {
            reader.buf.extend_from_slice(&bytes);
        }
        let (mut last_seq, mut out) = (0, Vec::new());
        let ended = reader.handle_frames(&shared, &mut last_seq, &mut out);
        assert_eq!(ended, Ok(Some("close_4001".to_string())));
        assert_eq!(
            shared.received.load(Relaxed),
            1,
            "one message from two fragments"
        );
        assert_eq!(last_seq, 5);
        let (mut pong, mut close) = (Vec::new(), Vec::new());
        wire::push_frame(&mut pong, wire::OP_PONG, b"hb");
        wire::push_frame(&mut close, wire::OP_CLOSE, &4001u16.to_be_bytes());
        assert_eq!(out, [pong, close].concat(), "a pong, then the close echoed");
    }

    #[test]
    fn a_continuation_without_a_start_is_a_protocol_error() {
        let shared = Shared::new(0, 42, None);
        let mut reader = Reader::new();
        reader
            .buf
            .extend_from_slice(&server_frame(true, wire::OP_CONTINUATION, b"x"));
        let ended = reader.handle_frames(&shared, &mut 0, &mut Vec::new());
        assert_eq!(ended.map_err(|e| e.reason()), Err("protocol".to_string()));
    }
}
