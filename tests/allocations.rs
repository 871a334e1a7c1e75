//! Allocations on a targeted message's path, counted: a POST body parsed, the message's
//! frame pieces built once, its id, the session's ordering core taking the push and the
//! frame written into a session's write buffer. A counting global allocator (per thread, so
//! tests running beside each other do not count for each other) holds each step to what it
//! must keep, so an allocation added per message shows up here rather than only as a
//! slower benchmark.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use bytes::BytesMut;
use herald::actors::session::order::{Action, Limits, Order};
use herald::frames::{wire, MessageParts};
use herald::ingest::validate::{parse_json, MessageIn};
use herald::store::{new_message_id, Page};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: nothing to count while the thread's locals are being torn down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is passed on unchanged to the system allocator; counting touches
// only a const-initialised thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What `f` returns, and how many allocations (and reallocations) it made on this thread.
fn counted<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATIONS.with(Cell::get);
    let out = f();
    (out, ALLOCATIONS.with(Cell::get) - before)
}

const LIMITS: Limits = Limits {
    page_size: 100,
    replay_limit: 1000,
    pending_cap: 1000,
};

#[test]
fn a_valid_body_is_parsed_keeping_only_its_recipient_and_payload() {
    let body = r#"{"to":"alice","payload":{"text":"hello","n":1},"ttl_s":60}"#;
    let (parsed, n) = counted(|| parse_json::<MessageIn>(body));
    assert!(parsed.is_ok());
    // `to` as a JSON value (its string) and the payload's raw text: nothing else, and in
    // particular no record of the keys passed on the way (only a failing body is re-read
    // with one, to name the field at fault).
    assert!(n <= 2, "{n} allocations to parse one message body");
}

#[test]
fn a_message_is_encoded_once_into_two_shared_pieces_under_one_id() {
    // The first id of a thread sets up its random source; from then on, per message:
    new_message_id();
    let (id, n) = counted(new_message_id);
    assert_eq!(n, 1, "the id's text is the Arc's own");
    let (parts, n) =
        counted(|| MessageParts::new(&id, Some("chat \"x\""), r#"{"text":"hello"}"#, 1_700, 0));
    assert_eq!(n, 3, "head, tail and the Arc that shares them");
    let (frame, n) = counted(|| parts.frame(7));
    assert_eq!(n, 0, "a recipient's frame shares the pieces");
    let mut buf = BytesMut::with_capacity(4096);
    let ((), n) = counted(|| wire::put_frame(&mut buf, &frame));
    assert_eq!(
        n, 0,
        "the frame is written from its pieces, not spliced first"
    );
    assert_eq!(buf[0], 0x81, "one final text frame");
    assert!(buf.ends_with(frame.to_text().as_bytes()));
}

#[test]
fn the_ordering_core_takes_an_in_order_push_without_allocating() {
    let (mut order, _read) = Order::start(Some(5), LIMITS);
    let settled = Page {
        messages: Vec::new(),
        last_seq: 5,
        first_retained: 6,
        settled_upto: 5,
        more: false,
        held_back: false,
    };
    assert_eq!(
        order.on_page(5, settled).to_vec(),
        vec![Action::Welcome { last_seq: 5 }]
    );
    let parts = MessageParts::new("m-6", None, "1", 0, 0);
    let frame = parts.frame(6);
    let (actions, n) = counted(|| order.on_push(6, frame));
    assert!(matches!(actions[..], [Action::Frame { seq: 6, .. }]));
    assert_eq!(n, 0, "the actions of one push are kept inline");
    // A push ahead of the next seq is held and a read asked for: still inline.
    let (actions, n) = counted(|| order.on_push(9, parts.frame(9)));
    assert!(matches!(
        actions[..],
        [Action::Read { delay, .. }] if delay == Duration::ZERO
    ));
    assert!(n <= 1, "only the held push's slot ({n} allocations)");
}
