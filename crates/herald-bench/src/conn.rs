//! One client WebSocket of a bench worker: open it (socket, source address, upgrade),
//! read frames and time this run's messages, ack and close when told to; plus the counters
//! all connections of a worker share. Never decides when to connect or finish.
//!
//! Each connection is a bare task holding its socket (2 KiB read buffer), a finish signal
//! and its highest seq. Counters are relaxed atomics and the histograms sit behind a `std`
//! mutex, uncontended because the worker runs on one thread and nothing awaits while it
//! is held.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nix::sys::socket::setsockopt;
use nix::sys::socket::sockopt::IpBindAddressNoPort;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::frame;
use super::histogram::Histogram;
use super::protocol::{bump, Progress, Reasons};
use super::sys::unix_micros;

/// How long finishing connections may take to ack and close.
pub const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// Read buffer per connection. Frames are a few hundred bytes, and tungstenite zeroes the
/// buffer's free space on every read, so 2 KiB instead of its 128 KiB default.
const READ_BUFFER: usize = 2048;
/// errno values that deserve their own reason.
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;
const EADDRINUSE: i32 = 98;
const EADDRNOTAVAIL: i32 = 99;

/// Latency histograms of message frames, behind one lock.
#[derive(Default)]
pub struct Latencies {
    /// Send to receipt.
    pub total: Histogram,
    /// Send to the server's `ts` (when it stored the message).
    pub stored: Histogram,
    /// TCP connect to the `101` answer: how long each opened connection's handshake took.
    pub handshake: Histogram,
}

/// Counters and results shared by the connection tasks of this worker.
pub struct Shared {
    pub worker: usize,
    /// Open-file limit, read at start: once it is reached `/proc` cannot be opened either.
    pub fd_limit: Option<u64>,
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    pub open: AtomicU64,
    pub received: AtomicU64,
    pub stale: AtomicU64,
    pub out_of_order: AtomicU64,
    pub first_recv_us: AtomicU64,
    pub last_recv_us: AtomicU64,
    /// Connection tasks not yet ended (handshaking, open or closing).
    pub live_tasks: AtomicU64,
    pub run_id: u64,
    pub latency: Mutex<Latencies>,
    pub connect_errors: Mutex<Reasons>,
    pub disconnects: Mutex<Reasons>,
    pub failed_users: Mutex<Vec<u64>>,
}

impl Shared {
    /// Zeroed counters for worker `worker` of run `run_id`.
    pub fn new(worker: usize, run_id: u64, fd_limit: Option<u64>) -> Shared {
        Shared {
            worker,
            fd_limit,
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            open: AtomicU64::new(0),
            received: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            first_recv_us: AtomicU64::new(0),
            last_recv_us: AtomicU64::new(0),
            live_tasks: AtomicU64::new(0),
            run_id,
            latency: Mutex::new(Latencies::default()),
            connect_errors: Mutex::new(Reasons::new()),
            disconnects: Mutex::new(Reasons::new()),
            failed_users: Mutex::new(Vec::new()),
        }
    }

    pub fn progress(&self) -> Progress {
        Progress {
            connected: self.connected.load(Relaxed),
            failed: self.failed.load(Relaxed),
            open: self.open.load(Relaxed),
            received: self.received.load(Relaxed),
        }
    }

    /// Counts a connection that could not be opened; the first failure of each kind is
    /// logged (with the open-file limit for EMFILE), later ones only counted.
    pub fn connect_failed(&self, user: u64, reason: &str, detail: &str) {
        self.failed.fetch_add(1, Relaxed);
        // unwrap (all three locks): the worker has one thread and never panics holding them
        self.failed_users.lock().unwrap().push(user);
        let mut errors = self.connect_errors.lock().unwrap();
        bump(&mut errors, reason, 1);
        if errors[reason] == 1 {
            let worker = self.worker;
            if reason == "fd_limit" {
                let limit = self.fd_limit.map_or("?".into(), |n| n.to_string());
                eprintln!(
                    "bench-worker {worker}: open-file limit reached (EMFILE, limit {limit}) \
                     connecting user {user}; counted as a failed connection, and so are later \
                     ones (use a smaller --conns-per-worker)"
                );
            } else {
                eprintln!(
                    "bench-worker {worker}: connecting user {user} failed ({reason}): {detail}; \
                     later `{reason}` failures are only counted"
                );
            }
        }
    }

    /// Handles one text frame: times message frames of this run, counts the rest.
    fn on_text(&self, text: &str, last_seq: &mut u64) {
        let Some(frame) = frame::parse(text) else {
            return;
        };
        // Replays count towards the ack too, so the next run does not get them again.
        if let Some(seq) = frame.seq {
            if seq <= *last_seq {
                self.out_of_order.fetch_add(1, Relaxed);
            }
            *last_seq = (*last_seq).max(seq);
        }
        let Some(stamp) = frame.stamp.filter(|s| s.r == self.run_id) else {
            self.stale.fetch_add(1, Relaxed);
            return;
        };
        let now = unix_micros();
        self.received.fetch_add(1, Relaxed);
        let _ = self
            .first_recv_us
            .compare_exchange(0, now, Relaxed, Relaxed);
        self.last_recv_us.fetch_max(now, Relaxed);
        // unwrap: see connect_failed
        let mut latency = self.latency.lock().unwrap();
        latency.total.record(now.saturating_sub(stamp.t));
        if let Some(ts_ms) = frame.ts_ms {
            latency
                .stored
                .record(ts_ms.saturating_mul(1000).saturating_sub(stamp.t));
        }
    }
}

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

fn ws_reason(e: &WsError) -> String {
    match e {
        WsError::Io(io) => io_reason(io),
        WsError::Http(resp) => format!("http_{}", resp.status().as_u16()),
        WsError::ConnectionClosed | WsError::AlreadyClosed => "closed".into(),
        WsError::Protocol(_) => "protocol".into(),
        _ => "websocket".into(),
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

/// Opens one WebSocket: socket, bind, TCP connect, HTTP upgrade.
async fn open(
    url: String,
    target: SocketAddr,
    source: Option<SocketAddr>,
    config: WebSocketConfig,
) -> Result<WebSocketStream<TcpStream>, (String, String)> {
    let io = |e: std::io::Error| (io_reason(&e), e.to_string());
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(io)?;
    if let Some(src) = source {
        // Without this, bind(addr:0) reserves a port by scanning the ephemeral range for
        // one free on that address: with 10 000 sockets bound that scan is ~90 % of the
        // worker's CPU. With it the port is picked at connect time, unique per 4-tuple.
        setsockopt(&socket, IpBindAddressNoPort, &true).map_err(|e| io(std::io::Error::from(e)))?;
        socket.bind(src).map_err(io)?;
    }
    let stream = socket.connect(target).await.map_err(io)?;
    stream.set_nodelay(true).map_err(io)?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .map_err(|e| (ws_reason(&e), e.to_string()))?;
    Ok(ws)
}

/// What a connection task needs besides its socket.
pub struct Conn {
    pub user: u64,
    pub url: String,
    pub target: SocketAddr,
    pub source: Option<SocketAddr>,
    pub handshake_timeout: Duration,
}

/// One connection for its whole life: connect, read until told to finish (then ack the
/// highest seq and close) or until the server ends it (counted as a disconnect).
pub async fn connection(
    c: Conn,
    shared: Arc<Shared>,
    permit: tokio::sync::OwnedSemaphorePermit,
    mut finish: watch::Receiver<bool>,
) {
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0);
    let started = std::time::Instant::now();
    let opened =
        tokio::time::timeout(c.handshake_timeout, open(c.url, c.target, c.source, config)).await;
    drop(permit);
    let mut ws = match opened {
        Ok(Ok(ws)) => {
            let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            // unwrap: see Shared::connect_failed
            shared.latency.lock().unwrap().handshake.record(took);
            ws
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
    // One finish future for the whole loop: re-creating it per frame costs a waker
    // registration each time.
    let finished = finish.changed();
    tokio::pin!(finished);
    let ended_by_server = loop {
        tokio::select! {
            biased;
            _ = &mut finished => break None,
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => shared.on_text(t.as_str(), &mut last_seq),
                Some(Ok(Message::Close(frame))) => {
                    break Some(frame.map_or("close".into(), |f| format!("close_{}", u16::from(f.code))));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break Some(ws_reason(&e)),
                None => break Some("eof".to_string()),
            }
        }
    };
    shared.open.fetch_sub(1, Relaxed);
    match ended_by_server {
        Some(reason) => {
            // unwrap: see Shared::connect_failed
            bump(&mut shared.disconnects.lock().unwrap(), &reason, 1);
        }
        None => {
            let _ = tokio::time::timeout(CLOSE_GRACE, async {
                if last_seq > 0 {
                    let ack = format!(r#"{{"type":"ack","seq":{last_seq}}}"#);
                    ws.send(Message::text(ack)).await?;
                }
                ws.close(None).await?;
                while let Some(Ok(_)) = ws.next().await {}
                Ok::<_, WsError>(())
            })
            .await;
        }
    }
    shared.live_tasks.fetch_sub(1, Relaxed);
}
