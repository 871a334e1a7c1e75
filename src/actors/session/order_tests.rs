//! Table tests of the ordering core, one per rule; the property test over random
//! interleavings is in `order_sim.rs`.

use super::*;

#[path = "order_sim.rs"]
mod sim;

const LIMITS: Limits = Limits {
    page_size: 4,
    replay_limit: 1000,
    pending_cap: 8,
};

fn frame(seq: Seq) -> Frame {
    Frame::from(format!("m{seq}"))
}

fn page(messages: &[Seq], last_seq: Seq, settled_upto: Seq) -> Page {
    Page {
        messages: messages.iter().map(|&s| (s, frame(s))).collect(),
        last_seq,
        first_retained: 1,
        settled_upto,
        more: false,
        held_back: false,
    }
}

fn sent(actions: &[Action]) -> Vec<Seq> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Frame { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

fn read_of(actions: &[Action]) -> Option<(ReadFrom, Duration)> {
    actions.iter().find_map(|a| match a {
        Action::Read { from, delay, .. } => Some((*from, *delay)),
        _ => None,
    })
}

fn skipped(actions: &[Action]) -> Vec<(Seq, Seq)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Skipped { from, to } => Some((*from, *to)),
            _ => None,
        })
        .collect()
}

/// A started core that read an empty store after `since` (everything up to it settled).
fn live_at(since: Seq) -> Order {
    let (mut o, first) = Order::start(Some(since), LIMITS);
    assert_eq!(
        read_of(&[first]),
        Some((ReadFrom::After(since), Duration::ZERO))
    );
    let acts = o.on_page(since, page(&[], since, since));
    assert_eq!(acts.to_vec(), vec![Action::Welcome { last_seq: since }]);
    o
}

#[test]
fn first_read_starts_from_since_or_the_device_cursor_and_welcome_comes_first() {
    let (_, first) = Order::start(None, LIMITS);
    assert_eq!(
        read_of(&[first]),
        Some((ReadFrom::DeviceCursor, Duration::ZERO))
    );
    let (mut o, _) = Order::start(Some(2), LIMITS);
    let acts = o.on_page(2, page(&[3, 4], 4, 4));
    assert_eq!(acts[0], Action::Welcome { last_seq: 4 });
    assert_eq!(sent(&acts), vec![3, 4]);
    assert!(!o.is_reading());
}

#[test]
fn push_of_the_next_seq_is_sent_at_once_and_old_or_repeated_ones_are_dropped() {
    let mut o = live_at(5);
    assert_eq!(sent(&o.on_push(6, frame(6))), vec![6]);
    assert!(o.on_push(6, frame(6)).is_empty());
    assert!(o.on_push(3, frame(3)).is_empty());
    assert_eq!(o.delivered(), 6);
}

#[test]
fn push_ahead_of_a_gap_is_held_and_sent_after_the_gap_read_in_order() {
    let mut o = live_at(1);
    let acts = o.on_push(4, frame(4));
    assert!(sent(&acts).is_empty());
    assert_eq!(read_of(&acts), Some((ReadFrom::After(1), Duration::ZERO)));
    assert!(
        o.on_push(3, frame(3)).is_empty(),
        "held while the read runs"
    );
    let acts = o.on_page(1, page(&[2, 3, 4], 4, 4));
    assert_eq!(sent(&acts), vec![2, 3, 4]);
    assert!(!o.is_reading());
}

/// Issue 13, first race: seq N's copy lands right after the page's query. The store holds
/// the page back (N+1's stamp is young); the core reads again and never skips N.
#[test]
fn page_held_back_before_an_in_flight_seq_is_read_again_and_nothing_is_skipped() {
    let mut o = live_at(4);
    o.on_push(6, frame(6));
    let mut held = page(&[], 6, 4);
    held.held_back = true;
    let acts = o.on_page(4, held);
    assert!(sent(&acts).is_empty() && skipped(&acts).is_empty());
    assert_eq!(read_of(&acts), Some((ReadFrom::After(4), GAP_RETRY)));
    let acts = o.on_page(4, page(&[5, 6], 6, 6));
    assert_eq!(sent(&acts), vec![5, 6]);
}

/// Issue 13, second race: seq N was reserved (the counter says last_seq = N) but not stored
/// when the read ran. A reserved seq is not a settled one: a later push of N+1 must wait for
/// N.
#[test]
fn reserved_but_unstored_seq_is_not_settled_and_a_later_push_waits_for_it() {
    let (mut o, _) = Order::start(Some(4), LIMITS);
    // Counter at 5, nothing after 4 stored yet, counter not final: settled only to 4.
    let acts = o.on_page(4, page(&[], 5, 4));
    assert_eq!(acts.to_vec(), vec![Action::Welcome { last_seq: 5 }]);
    let acts = o.on_push(6, frame(6));
    assert_eq!(read_of(&acts), Some((ReadFrom::After(4), Duration::ZERO)));
    // The gap read finds 6 but not 5, whose append is still running: held back.
    let mut held = page(&[], 6, 4);
    held.held_back = true;
    let acts = o.on_page(4, held);
    assert!(sent(&acts).is_empty() && skipped(&acts).is_empty());
    let acts = o.on_page(4, page(&[5, 6], 6, 6));
    assert_eq!(sent(&acts), vec![5, 6]);
}

#[test]
fn gap_the_store_settles_is_skipped_reported_and_the_held_push_follows() {
    let mut o = live_at(1);
    o.on_push(4, frame(4));
    // 2 expired, 3's append gave up: the page passes over them.
    let acts = o.on_page(1, page(&[4], 4, 4));
    assert_eq!(skipped(&acts), vec![(2, 3)]);
    assert_eq!(sent(&acts), vec![4]);
}

#[test]
fn settled_verdict_of_a_read_issued_before_a_push_does_not_cover_that_push() {
    let mut o = live_at(1);
    o.on_push(3, frame(3)); // read #2 issued
    o.on_push(6, frame(6)); // arrives while read #2 runs
                            // Read #2 ran before 4 and 5 existed; an authoritative store settles "everything".
    let acts = o.on_page(1, page(&[2, 3], 3, Seq::MAX));
    assert_eq!(sent(&acts), vec![2, 3]);
    assert!(skipped(&acts).is_empty(), "4 and 5 may exist: not skipped");
    assert_eq!(read_of(&acts), Some((ReadFrom::After(3), Duration::ZERO)));
    let acts = o.on_page(3, page(&[4, 5, 6], 6, Seq::MAX));
    assert_eq!(sent(&acts), vec![4, 5, 6]);
}

#[test]
fn seqs_another_store_never_had_are_passed_once_a_later_read_settles_them() {
    // A memory store per node (try-out cluster): pushes carry seqs the local store lacks.
    let mut o = live_at(0);
    o.on_push(4, frame(4));
    let acts = o.on_page(0, page(&[], 0, Seq::MAX));
    assert_eq!(skipped(&acts), vec![(1, 3)]);
    assert_eq!(sent(&acts), vec![4]);
}

#[test]
fn full_page_continues_the_replay_before_held_pushes_are_merged() {
    let (mut o, _) = Order::start(Some(0), LIMITS);
    assert!(o.on_push(7, frame(7)).is_empty());
    let mut p = page(&[1, 2, 3, 4], 7, 4);
    p.more = true;
    let acts = o.on_page(0, p);
    assert_eq!(sent(&acts), vec![1, 2, 3, 4]);
    assert_eq!(read_of(&acts), Some((ReadFrom::After(4), Duration::ZERO)));
    let acts = o.on_page(4, page(&[5, 6, 7], 7, 7));
    assert_eq!(sent(&acts), vec![5, 6, 7]);
}

#[test]
fn resume_beyond_the_replay_limit_truncates_and_replays_only_the_newest() {
    let limits = Limits {
        replay_limit: 3,
        ..LIMITS
    };
    let (mut o, _) = Order::start(Some(2), limits);
    let acts = o.on_page(2, page(&[3, 4, 5, 6], 10, 6));
    assert_eq!(
        acts[..2],
        [
            Action::Welcome { last_seq: 10 },
            Action::Truncated {
                after: 2,
                resume_from: 8
            }
        ]
    );
    assert!(sent(&acts).is_empty(), "the early page is not sent");
    assert_eq!(read_of(&acts), Some((ReadFrom::After(7), Duration::ZERO)));
    assert_eq!(
        sent(&o.on_page(7, page(&[8, 9, 10], 10, 10))),
        vec![8, 9, 10]
    );
}

#[test]
fn retention_overtaking_the_session_is_reported_as_truncated() {
    let mut o = live_at(2);
    o.on_push(9, frame(9));
    let mut p = page(&[6, 7, 8, 9], 9, 9);
    p.first_retained = 6;
    let acts = o.on_page(2, p);
    assert_eq!(
        acts[0],
        Action::Truncated {
            after: 2,
            resume_from: 6
        }
    );
    assert_eq!(sent(&acts), vec![6, 7, 8, 9]);
}

#[test]
fn failed_initial_reads_retry_then_give_up_and_failed_gap_reads_keep_holding() {
    let (mut o, _) = Order::start(None, LIMITS);
    for _ in 1..INITIAL_ATTEMPTS {
        let acts = o.on_read_failed();
        assert_eq!(read_of(&acts), Some((ReadFrom::DeviceCursor, STORE_RETRY)));
    }
    assert_eq!(o.on_read_failed().to_vec(), vec![Action::GiveUp]);

    let mut o = live_at(1);
    o.on_push(3, frame(3));
    for _ in 0..20 {
        let acts = o.on_read_failed();
        assert_eq!(read_of(&acts), Some((ReadFrom::After(1), STORE_RETRY)));
        assert!(sent(&acts).is_empty() && skipped(&acts).is_empty());
    }
}

#[test]
fn gap_without_a_verdict_is_read_again_with_a_growing_pause_and_never_skipped() {
    let mut o = live_at(1);
    o.on_push(3, frame(3));
    let mut delays = Vec::new();
    for _ in 0..15 {
        let mut held = page(&[], 3, 1);
        held.held_back = true;
        let acts = o.on_page(1, held);
        assert!(skipped(&acts).is_empty());
        delays.push(read_of(&acts).unwrap().1);
    }
    assert_eq!(delays[0], GAP_RETRY);
    assert!(delays.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(*delays.last().unwrap(), GAP_RETRY_MAX);
}

#[test]
fn pushes_beyond_the_hold_cap_are_read_from_the_store() {
    let limits = Limits {
        pending_cap: 2,
        ..LIMITS
    };
    let (mut o, _) = Order::start(Some(0), limits);
    o.on_page(0, page(&[], 0, 0));
    o.on_push(3, frame(3));
    for s in 4..=9 {
        o.on_push(s, frame(s));
    }
    assert_eq!(o.held(), 2);
    let acts = o.on_page(0, page(&[1, 2], 9, 2));
    assert_eq!(sent(&acts), vec![1, 2, 3, 4]);
    // 5..9 were never held, and arrived while the read ran: the core reads on at once.
    assert_eq!(read_of(&acts), Some((ReadFrom::After(4), Duration::ZERO)));
    assert_eq!(
        sent(&o.on_page(4, page(&[5, 6, 7, 8, 9], 9, 9))),
        vec![5, 6, 7, 8, 9]
    );
}

#[test]
fn position_check_reads_only_when_behind_and_idle() {
    let mut o = live_at(3);
    assert!(o.on_position(3).is_empty());
    let acts = o.on_position(5);
    assert_eq!(read_of(&acts), Some((ReadFrom::After(3), Duration::ZERO)));
    assert!(o.on_position(6).is_empty(), "a read is already running");
    assert_eq!(sent(&o.on_page(3, page(&[4, 5], 5, 5))), vec![4, 5]);
}

#[test]
fn a_position_seq_the_store_settles_is_passed_once_and_not_read_at_every_check() {
    let mut o = live_at(3);
    let acts = o.on_position(5);
    assert_eq!(read_of(&acts), Some((ReadFrom::After(3), Duration::ZERO)));
    // Seq 5 was reserved by an append that gave up: the store settles it.
    let acts = o.on_page(3, page(&[4], 5, 5));
    assert_eq!(sent(&acts), vec![4]);
    assert!(acts.contains(&Action::Skipped { from: 5, to: 5 }));
    assert_eq!(o.delivered(), 5);
    assert!(o.on_position(5).is_empty(), "nothing left to read");
}

#[test]
fn a_position_seq_still_on_its_way_is_read_again_until_it_arrives() {
    let mut o = live_at(3);
    o.on_position(4);
    // The store holds the page back: seq 4 is reserved but not stored yet.
    let acts = o.on_page(
        3,
        Page {
            held_back: true,
            last_seq: 4,
            settled_upto: 3,
            first_retained: 1,
            ..Page::default()
        },
    );
    assert!(sent(&acts).is_empty());
    assert!(matches!(read_of(&acts), Some((ReadFrom::After(3), d)) if d > Duration::ZERO));
    assert_eq!(sent(&o.on_page(3, page(&[4], 4, 4))), vec![4]);
}

#[test]
fn acks_are_clamped_to_what_was_sent_and_only_move_forward() {
    let mut o = live_at(4);
    assert_eq!(o.on_ack(9), Some(4));
    assert_eq!(o.on_ack(3), None);
    assert_eq!(o.on_ack(4), None);
}
