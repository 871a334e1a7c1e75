//! A session's outbound side against a real loopback socket: the `101` answer leaves with
//! the welcome, the welcome is the first frame, and frames written through the broadcast
//! lane arrive whole and in order with the frames the session queued itself.

use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;

use actix_rt::net::TcpStream;
use bytestring::ByteString;
use tokio::io::AsyncReadExt;

use super::inbound::Gate;
use super::lane::{self, Lane};
use super::outbound::{Budget, Finished, Out, Outbound, Through};
use super::socket::Socket;
use crate::frames::wire::encode_text;
use crate::ids::SessionId;
use crate::metrics::Counters;

const ANSWER: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n\r\n";

/// An outbound side holding `answer` on one end of a loopback connection, and the other end.
async fn fresh(answer: &[u8]) -> (Rc<RefCell<Outbound>>, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let counters = Arc::new(Counters::default());
    let gauge = counters.queues.register(0, "u".into(), "d".into(), 0);
    let budget = Budget {
        frames: 64,
        bytes: 1 << 20,
    };
    let out = Outbound::new(
        Socket::new(server),
        answer,
        budget,
        Rc::new(Gate::default()),
        gauge,
        counters,
    );
    (Rc::new(RefCell::new(out)), client)
}

/// A welcomed outbound side and its lane (the welcome already read).
async fn outbound() -> (Rc<RefCell<Outbound>>, Lane, tokio::net::TcpStream) {
    let (out, mut client) = fresh(&[]).await;
    out.borrow_mut().welcome(text("welcome"));
    let lane = handed_over(&out);
    drain(&out).await;
    let welcome = encode_text(&[text("welcome")]);
    assert_eq!(
        read_exactly(&mut client, welcome.bytes.len()).await,
        welcome.bytes
    );
    (out, lane, client)
}

/// `out`'s lane, handed over and taken on this thread as a session and its shard do.
fn handed_over(out: &Rc<RefCell<Outbound>>) -> Lane {
    let id = SessionId::next();
    lane::hand_over(id, out.clone());
    let lane = lane::take(id).unwrap();
    assert!(lane::take(id).is_none(), "a lane is taken once");
    lane
}

/// Runs the writer until it has nothing left to write.
async fn drain(out: &Rc<RefCell<Outbound>>) {
    poll_fn(|cx| match out.borrow_mut().poll_write(cx) {
        Poll::Pending => Poll::Ready(()),
        Poll::Ready(Finished::Closed | Finished::Broken) => panic!("writer stopped"),
    })
    .await
}

/// Reads from `client` until `want` bytes arrived.
async fn read_exactly(client: &mut tokio::net::TcpStream, want: usize) -> Vec<u8> {
    let mut got = vec![0; want];
    client.read_exact(&mut got).await.unwrap();
    got
}

fn text(s: &str) -> ByteString {
    ByteString::from(s.to_owned())
}

#[actix_rt::test]
async fn a_broadcast_waits_behind_frames_the_session_queued() {
    let (out, lane, mut client) = outbound().await;
    out.borrow_mut().push(Out::Text(text("first")));
    let batch = encode_text(&[text("second")]);
    assert_eq!(lane.offer(&batch), Through::Busy);
    drain(&out).await;
    assert_eq!(lane.offer(&batch), Through::Written);
    let first = encode_text(&[text("first")]);
    let want = [first.bytes.as_ref(), batch.bytes.as_ref()].concat();
    assert_eq!(read_exactly(&mut client, want.len()).await, want);
}

#[actix_rt::test]
async fn a_broadcast_the_socket_cannot_take_whole_is_finished_by_the_writer() {
    let (out, lane, mut client) = outbound().await;
    // Far more than a loopback socket buffers while the client reads nothing.
    let big = "x".repeat(60_000);
    let batch = encode_text(&[text(&big)]);
    let rounds = 400;
    let mut written = 0;
    for _ in 0..rounds {
        match lane.offer(&batch) {
            Through::Written => written += 1,
            Through::Busy => out.borrow_mut().push(Out::Encoded(batch.clone())),
            Through::Closing => panic!("not closing"),
        }
    }
    assert!(written >= 1);
    assert!(written < rounds, "the socket took everything at once");
    let total = batch.bytes.len() * rounds;
    let reader = actix_rt::spawn(async move { read_exactly(&mut client, total).await });
    while !reader.is_finished() {
        drain(&out).await;
        actix_rt::task::yield_now().await;
    }
    let got = reader.await.unwrap();
    assert!(got
        .chunks(batch.bytes.len())
        .all(|c| c == batch.bytes.as_ref()));
}

#[actix_rt::test]
async fn a_closing_session_drops_broadcasts() {
    let (out, lane, _client) = outbound().await;
    let batch = encode_text(&[text("late")]);
    out.borrow_mut()
        .close(None, crate::frames::CloseReason::GoingAway);
    assert_eq!(lane.offer(&batch), Through::Closing);
}

#[actix_rt::test]
async fn a_lane_is_handed_over_on_its_own_thread_only() {
    let (out, _client) = fresh(&[]).await;
    let id = SessionId::next();
    lane::hand_over(id, out.clone());
    let elsewhere = std::thread::spawn(move || lane::take(id).is_some())
        .join()
        .unwrap();
    assert!(!elsewhere);
    lane::withdraw(id);
    assert!(lane::take(id).is_none());
    assert_eq!(Rc::strong_count(&out), 1);
}

/// Nothing has arrived at `client` (on loopback a write is in the peer's queue when it returns).
fn nothing_arrived(client: &tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(client.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[actix_rt::test]
async fn the_upgrade_answer_leaves_with_the_welcome_which_goes_before_earlier_frames() {
    let (out, mut client) = fresh(ANSWER).await;
    let batch = encode_text(&[text("broadcast")]);
    out.borrow_mut().push(Out::Encoded(batch.clone()));
    out.borrow_mut().push(Out::Ping);
    drain(&out).await;
    assert!(nothing_arrived(&client));
    out.borrow_mut().welcome(text("welcome"));
    drain(&out).await;
    let welcome = encode_text(&[text("welcome")]);
    let ping = [0x89, 0x00];
    let want = [ANSWER, &welcome.bytes, &batch.bytes, &ping].concat();
    assert_eq!(read_exactly(&mut client, want.len()).await, want);
}

#[actix_rt::test]
async fn a_released_answer_goes_alone_and_frames_still_wait_for_the_welcome() {
    let (out, mut client) = fresh(ANSWER).await;
    let lane = handed_over(&out);
    out.borrow_mut().release_answer();
    drain(&out).await;
    assert_eq!(read_exactly(&mut client, ANSWER.len()).await, ANSWER);
    let batch = encode_text(&[text("broadcast")]);
    assert_eq!(lane.offer(&batch), Through::Busy);
    out.borrow_mut().push(Out::Encoded(batch.clone()));
    drain(&out).await;
    assert!(nothing_arrived(&client));
    out.borrow_mut().welcome(text("welcome"));
    drain(&out).await;
    let welcome = encode_text(&[text("welcome")]);
    let want = [&welcome.bytes[..], &batch.bytes].concat();
    assert_eq!(read_exactly(&mut client, want.len()).await, want);
}

#[actix_rt::test]
async fn closing_before_the_welcome_sends_the_answer_then_the_close_frame() {
    let (out, mut client) = fresh(ANSWER).await;
    out.borrow_mut().push(Out::Text(text("dropped")));
    out.borrow_mut()
        .close(None, crate::frames::CloseReason::GoingAway);
    let finished = poll_fn(|cx| Poll::Ready(out.borrow_mut().poll_write(cx))).await;
    assert!(matches!(finished, Poll::Ready(Finished::Closed)));
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert!(got.starts_with(ANSWER));
    // The close frame (opcode 8) follows the answer directly.
    assert_eq!(got[ANSWER.len()], 0x88);
}
