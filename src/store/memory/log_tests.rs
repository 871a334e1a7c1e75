//! Tests of the memory store's bounds and its id index, on plain `Logs`.

use super::*;

fn logs(max_per_user: usize, max_bytes: usize, max_keys: usize) -> Logs {
    Logs::new(Limits {
        max_per_user,
        max_bytes,
        max_keys,
        idempotency_window_ms: 60_000,
    })
}

fn u(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

/// Stores a message that expires at `expires_ms`; answers its id.
fn store_until(l: &mut Logs, users: &[&str], payload: &str, expires_ms: u64) -> Arc<str> {
    let users: Vec<UserId> = users.iter().map(|s| u(s)).collect();
    let id = crate::store::new_message_id();
    let parts = MessageParts::new(&id, None, payload, 0, 0);
    l.store_for_users(&users, &id, &parts, expires_ms);
    id
}

fn store(l: &mut Logs, users: &[&str], payload: &str) -> Arc<str> {
    store_until(l, users, payload, u64::MAX)
}

/// (user, seq, stored) of every copy `locate` finds, sorted.
fn located(l: &Logs, id: &str, now: u64) -> Vec<(String, Seq, bool)> {
    let mut v: Vec<_> = l
        .locate(id, now)
        .into_iter()
        .map(|c| (c.user.to_string(), c.seq, c.stored))
        .collect();
    v.sort();
    v
}

fn seqs(l: &Logs, user: &str) -> Vec<Seq> {
    l.users[&u(user)].entries.iter().map(|e| e.seq).collect()
}

#[test]
fn past_the_byte_budget_the_oldest_messages_of_any_user_go_first() {
    let payload = format!("\"{}\"", "x".repeat(1000));
    let mut l = logs(100, 5_600, 10);
    store(&mut l, &["a"], &payload);
    store(&mut l, &["b"], &payload);
    store(&mut l, &["a", "b"], &payload);
    store(&mut l, &["c"], &payload);
    assert!(l.bytes() <= 5_600, "{}", l.bytes());
    // Five copies of ~1.2 KB each (frame, entry, id index) do not fit: the first (a:1) went.
    assert_eq!(seqs(&l, "a"), [2]);
    assert_eq!(seqs(&l, "b"), [1, 2]);
    assert_eq!(seqs(&l, "c"), [1]);
    assert_eq!(l.users[&u("a")].last_seq, 2, "seqs keep counting");
}

#[test]
fn per_user_retention_frees_bytes_and_leaves_no_stale_record_behind_for_long() {
    let mut l = logs(2, usize::MAX, 10);
    for _ in 0..10_000 {
        store(&mut l, &["a"], "1");
    }
    assert_eq!(seqs(&l, "a"), [9_999, 10_000]);
    assert_eq!(l.live, 2);
    assert_eq!(l.index.len(), 2, "trimmed messages leave the id index");
    let kept: usize = l.users[&u("a")].entries.iter().map(cost).sum();
    assert_eq!(l.bytes(), kept + l.index.bytes());
    assert!(l.fifo.len() <= 2 * l.live + 1024, "{}", l.fifo.len());
}

#[test]
fn a_message_is_located_in_every_recipient_log_until_its_last_copy_is_trimmed() {
    let mut l = logs(2, usize::MAX, 10);
    store(&mut l, &["a"], "0");
    let id = store(&mut l, &["a", "b"], "1");
    assert_eq!(
        located(&l, &id, 0),
        [("a".into(), 2, true), ("b".into(), 1, true)]
    );
    store(&mut l, &["a"], "2");
    store(&mut l, &["a"], "3");
    // a's copy (seq 2) fell out of a's log; b still holds its copy.
    assert_eq!(seqs(&l, "a"), [3, 4]);
    assert_eq!(
        located(&l, &id, 0),
        [("a".into(), 2, false), ("b".into(), 1, true)]
    );
    store(&mut l, &["b"], "4");
    store(&mut l, &["b"], "5");
    assert!(l.locate(&id, 0).is_empty(), "the last copy went");
    assert!(l.locate("unknown", 0).is_empty());
}

#[test]
fn an_expired_copy_is_located_but_not_stored() {
    let mut l = logs(10, usize::MAX, 10);
    let id = store_until(&mut l, &["a"], "1", 1_000);
    assert_eq!(located(&l, &id, 999), [("a".into(), 1, true)]);
    assert_eq!(located(&l, &id, 1_000), [("a".into(), 1, false)]);
}

#[test]
fn the_id_index_counts_in_the_byte_budget_and_leaves_with_evicted_messages() {
    let payload = format!("\"{}\"", "x".repeat(1000));
    let mut l = logs(100, 3_000, 10);
    let first = store(&mut l, &["a"], &payload);
    store(&mut l, &["b"], &payload);
    let frames: usize = l.users.values().flat_map(|u| &u.entries).map(cost).sum();
    assert_eq!(l.bytes(), frames + l.index.bytes());
    assert!(l.index.bytes() > 0);
    store(&mut l, &["c"], &payload);
    assert!(l.bytes() <= 3_000, "{}", l.bytes());
    assert!(l.locate(&first, 0).is_empty(), "evicted with its only copy");
    assert_eq!(l.index.len(), l.live);
}

#[test]
fn device_cursors_are_listed_for_the_asked_users_only() {
    let mut l = logs(10, usize::MAX, 10);
    store(&mut l, &["a", "b"], "1");
    l.save_cursor(u("a"), DeviceId::parse("phone").unwrap(), 1);
    l.save_cursor(u("a"), DeviceId::parse("tablet").unwrap(), 0);
    l.save_cursor(u("b"), DeviceId::parse("web").unwrap(), 1);
    let mut got: Vec<_> = l
        .device_cursors(&[u("a"), u("nobody")])
        .into_iter()
        .map(|c| (c.user.to_string(), c.device.to_string(), c.acked_seq))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("a".into(), "phone".into(), 1),
            ("a".into(), "tablet".into(), 0)
        ]
    );
}

#[test]
fn past_max_keys_the_oldest_idempotency_keys_are_forgotten() {
    let mut l = logs(10, usize::MAX, 3);
    for k in 0..5 {
        let entry = IdemEntry {
            id: Arc::from(format!("m{k}")),
            recipients: 1,
        };
        l.remember(format!("k{k}"), entry, 0);
    }
    assert!(l.seen("k0", 1).is_none());
    assert!(l.seen("k1", 1).is_none());
    assert_eq!(&*l.seen("k4", 1).unwrap().id, "m4");
    assert!(l.seen("k4", 60_001).is_none(), "window over");
}

#[test]
fn past_the_cursor_cap_the_device_furthest_behind_is_forgotten() {
    let mut l = logs(10, usize::MAX, 3);
    store(&mut l, &["a"], "1");
    for d in 0..MAX_DEVICE_CURSORS {
        let seq = if d == 7 { 0 } else { 1 };
        l.save_cursor(u("a"), DeviceId::parse(&format!("d{d}")).unwrap(), seq);
    }
    l.save_cursor(u("a"), DeviceId::parse("new").unwrap(), 1);
    let cursors = &l.users[&u("a")].cursors;
    assert_eq!(cursors.len(), MAX_DEVICE_CURSORS);
    assert!(!cursors.contains_key(&DeviceId::parse("d7").unwrap()));
    assert_eq!(cursors[&DeviceId::parse("new").unwrap()], 1);
}
