//! The MongoDB store's write path against a real MongoDB wire-protocol server: seqs under
//! concurrent writers, idempotency (including a first append that failed half-way), counter
//! repair, broadcasts, and batches as single commands. Harness: `tests/mongo/mod.rs`.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use herald::store::mongo::{MongoStore, MongoStoreConfig};
use herald::store::{MessageStore, NewMessage, StoreError, Target};
use mongodb::bson::{doc, DateTime, Document};
use serde_json::value::RawValue;

mod mongo;
use mongo::*;

#[test]
fn seqs_strictly_increase_per_user_under_concurrent_appends_from_several_nodes() {
    const NODES: usize = 4;
    const TASKS: usize = 4;
    const APPENDS: usize = 25;
    let fx = Fixture::new("conc");
    let cfg = MongoStoreConfig {
        max_messages_per_user: 100_000,
        ..fx.cfg.clone()
    };
    let delivered = append_from_nodes(&cfg, NODES, TASKS, APPENDS);
    actix_rt::System::new().block_on(async move {
        // A reader with a short budget: it reads over gaps (seqs reserved but never stored)
        // once they are a budget old rather than waiting for them.
        let reader = MongoStoreConfig {
            op_timeout_ms: 200,
            ..cfg.clone()
        };
        let store = MongoStore::connect(&reader).await.unwrap();
        let per_user = NODES * TASKS * APPENDS;
        check_stored_as_delivered(&store, "alice", per_user * 2, &delivered).await;
        check_stored_as_delivered(&store, "bob", per_user, &delivered).await;
        fx.finish().await;
    });
}

/// One delivery as an append answered it: (user, seq, message id).
type Handed = (String, u64, String);

/// Runs `nodes` threads, each with its own runtime and client like a real node, each
/// appending from `tasks` concurrent tasks `appends` times a two-message batch (alice and
/// bob, then alice alone); answers every delivery handed out.
fn append_from_nodes(
    cfg: &MongoStoreConfig,
    nodes: usize,
    tasks: usize,
    appends: usize,
) -> Vec<Handed> {
    let threads: Vec<_> = (0..nodes)
        .map(|_| {
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                actix_rt::System::new().block_on(async move {
                    let store = MongoStore::connect(&cfg).await.expect("store connects");
                    let tasks = (0..tasks).map(|_| async {
                        let mut got = Vec::new();
                        for _ in 0..appends {
                            let batch = vec![
                                msg(&["alice", "bob"], None, 600, "1"),
                                msg(&["alice"], None, 600, "2"),
                            ];
                            for a in store.append(batch).await.expect("append") {
                                for d in a.deliveries {
                                    got.push((d.user.to_string(), d.seq, a.id.to_string()));
                                }
                            }
                        }
                        got
                    });
                    futures_util::future::join_all(tasks).await.concat()
                })
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|n| n.join().expect("node thread"))
        .collect()
}

/// `name` got `expected` distinct seqs, and reading them back gives exactly those seqs,
/// strictly increasing, each holding the message it was handed out for.
async fn check_stored_as_delivered(
    store: &MongoStore,
    name: &str,
    expected: usize,
    delivered: &[Handed],
) {
    let mine: Vec<_> = delivered.iter().filter(|d| d.0 == name).collect();
    let unique: BTreeSet<u64> = mine.iter().map(|d| d.1).collect();
    assert_eq!(mine.len(), expected, "{name}: every copy delivered");
    assert_eq!(unique.len(), expected, "{name}: no seq handed out twice");
    let all: Vec<u64> = unique.iter().copied().collect();
    eventually("every copy readable", || async {
        seqs(&store.read(&user(name), 0, 100_000).await.unwrap()) == all
    })
    .await;
    let page = store.read(&user(name), 0, 100_000).await.unwrap();
    let stored = seqs(&page);
    assert!(
        stored.windows(2).all(|w| w[0] < w[1]),
        "{name}: strictly increasing"
    );
    assert_eq!(stored, all, "{name}: stored = delivered");
    let ids: HashMap<u64, &str> = mine.iter().map(|d| (d.1, d.2.as_str())).collect();
    for (seq, frame) in &page.messages {
        let f: serde_json::Value = serde_json::from_str(&frame.to_text()).unwrap();
        assert_eq!(f["seq"], *seq);
        assert_eq!(
            f["id"], ids[seq],
            "{name}: seq {seq} holds the message it was given to"
        );
    }
    assert!(page.last_seq >= *stored.last().unwrap());
}

#[actix_rt::test]
async fn retried_idempotency_key_returns_the_first_id_as_duplicate_without_deliveries() {
    let fx = Fixture::new("idem");
    let node_a = fx.store().await;
    let node_b = fx.store().await;
    let first = node_a
        .append(vec![msg(&["alice", "bob"], Some("k1"), 600, "{\"x\":1}")])
        .await
        .unwrap();
    assert!(!first[0].duplicate);
    assert_eq!(first[0].deliveries.len(), 2);

    // The retry lands on another node, in a batch that repeats the key once more.
    let again = node_b
        .append(vec![
            msg(&["alice", "bob"], Some("k1"), 600, "{\"x\":1}"),
            msg(&["alice"], Some("k2"), 600, "2"),
            msg(&["alice"], Some("k2"), 600, "2"),
        ])
        .await
        .unwrap();
    assert_eq!(again[0].id, first[0].id);
    assert!(again[0].duplicate);
    assert_eq!(again[0].recipients, 2);
    assert!(again[0].deliveries.is_empty());
    assert!(!again[1].duplicate);
    assert!(again[2].duplicate, "a key repeated inside one batch");
    assert_eq!(again[2].id, again[1].id);
    assert!(again[2].deliveries.is_empty());

    let page = node_a.read(&user("alice"), 0, 100).await.unwrap();
    assert_eq!(
        seqs(&page),
        vec![1, 2],
        "the duplicate stored nothing and used no seq"
    );
    assert_eq!(node_a.last_seq(&user("bob")).await.unwrap(), 1);

    // Once the key's window has passed (the TTL monitor has not run yet), it is new again.
    let past = DateTime::from_millis(DateTime::now().timestamp_millis() - 1);
    fx.db()
        .await
        .collection::<Document>("idempotency")
        .update_one(doc! {"_id": "k1"}, doc! {"$set": {"expires_at": past}})
        .await
        .unwrap();
    let later = node_b
        .append(vec![msg(&["alice"], Some("k1"), 600, "3")])
        .await
        .unwrap();
    assert!(!later[0].duplicate);
    assert_ne!(later[0].id, first[0].id);
    assert_eq!(later[0].deliveries[0].seq, 3);
    fx.finish().await;
}

#[actix_rt::test]
async fn retry_after_an_append_that_failed_half_way_stores_the_message_once_under_its_first_id() {
    let fx = Fixture::new("half");
    let store = fx.store().await;
    let db = fx.db().await;
    // A first append claimed "k-lost" and stored alice's copy (seq 1), then failed before
    // bob's copy and before marking the claim done. Another claimed "k-none" and failed
    // before storing anything.
    let now = DateTime::now().timestamp_millis();
    let (first_ts, later) = (now - 5000, DateTime::from_millis(now + 3_600_000));
    let claims = db.collection::<Document>("idempotency");
    for (key, id) in [("k-lost", "first-id"), ("k-none", "none-id")] {
        claims
            .insert_one(
                doc! {"_id": key, "id": id, "ts": first_ts, "recipients": 2_i64,
                "state": "pending", "expires_at": later},
            )
            .await
            .unwrap();
    }
    db.collection::<Document>("counters")
        .insert_one(doc! {"_id": "alice", "seq": 1_i64})
        .await
        .unwrap();
    db.collection::<Document>("messages")
        .insert_one(
            doc! {"_id": "first-id:alice", "user": "alice", "seq": 1_i64, "id": "first-id",
            "frame": "{\"stored\":1}", "expires_at": later},
        )
        .await
        .unwrap();

    let retry = store
        .append(vec![
            msg(&["alice", "bob"], Some("k-lost"), 600, "7"),
            msg(&["carol"], Some("k-none"), 600, "8"),
        ])
        .await
        .unwrap();
    // Not a duplicate of something unstored: completed under the first id and ts.
    assert!(!retry[0].duplicate);
    assert_eq!(&*retry[0].id, "first-id");
    let d = &retry[0].deliveries;
    assert_eq!(
        (d[0].seq, &*d[0].frame.to_text()),
        (1, "{\"stored\":1}"),
        "alice's stored copy is reused"
    );
    assert!(d[1].frame.to_text().contains("\"id\":\"first-id\""));
    assert!(
        d[1].frame
            .to_text()
            .ends_with(&format!(",\"ts\":{first_ts}}}")),
        "the first append's ts"
    );
    assert!(!retry[1].duplicate);
    assert_eq!(&*retry[1].id, "none-id");

    let page = store.read(&user("alice"), 0, 10).await.unwrap();
    assert_eq!(page.messages.len(), 1, "alice has one copy, not two");
    assert_eq!(page.last_seq, 1, "and no seq was reserved for a second one");
    let page = store.read(&user("bob"), 0, 10).await.unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].1, d[1].frame);

    // Now both are done: a third try is a plain duplicate.
    let third = store
        .append(vec![msg(&["alice", "bob"], Some("k-lost"), 600, "7")])
        .await
        .unwrap();
    assert!(third[0].duplicate);
    assert_eq!(&*third[0].id, "first-id");
    fx.finish().await;
}

#[actix_rt::test]
async fn counter_behind_its_stored_messages_fails_one_append_and_is_repaired() {
    let fx = Fixture::new("heal");
    let store = fx.store().await;
    store
        .append(vec![
            msg(&["alice"], None, 600, "1"),
            msg(&["alice"], None, 600, "2"),
        ])
        .await
        .unwrap();
    // As after restoring the counters from an older backup.
    fx.db()
        .await
        .collection::<Document>("counters")
        .delete_one(doc! {"_id": "alice"})
        .await
        .unwrap();
    let res = store.append(vec![msg(&["alice"], None, 600, "3")]).await;
    assert!(matches!(res, Err(StoreError::Unavailable(_))), "{res:?}");
    let ok = store
        .append(vec![msg(&["alice"], None, 600, "3")])
        .await
        .unwrap();
    assert_eq!(ok[0].deliveries[0].seq, 3);
    let p = store.read(&user("alice"), 0, 10).await.unwrap();
    assert_eq!(seqs(&p), vec![1, 2, 3], "nothing overwritten");
    fx.finish().await;
}

/// A store whose seq reservations let `other` append `times` messages to alice right after
/// its first round's counter update, before it reads its reservations back.
async fn raced_store(fx: &Fixture, other: MongoStore, times: usize) -> (MongoStore, Commands) {
    let (mut store, seen) = fx.watched_store().await;
    let other = Arc::new(other);
    let raced = Arc::new(AtomicBool::new(false));
    store.set_after_counters(Arc::new(move |u| {
        let (other, raced) = (other.clone(), raced.clone());
        Box::pin(async move {
            if u.as_str() == "alice" && !raced.swap(true, Ordering::SeqCst) {
                for _ in 0..times {
                    other
                        .append(vec![msg(&["alice"], None, 600, "2")])
                        .await
                        .unwrap();
                }
            }
        })
    }));
    (store, seen)
}

fn seqs_of(out: &[herald::store::Accepted]) -> Vec<(String, u64)> {
    out.iter()
        .flat_map(|a| &a.deliveries)
        .map(|d| (d.user.to_string(), d.seq))
        .collect()
}

#[actix_rt::test]
async fn counter_moved_by_another_node_before_the_read_back_leaves_each_append_its_own_block() {
    let fx = Fixture::new("race");
    let other = fx.store().await;
    other
        .append(vec![msg(&["alice", "bob"], None, 600, "1")])
        .await
        .unwrap();
    let (store, seen) = raced_store(&fx, other, 1).await;
    let out = store
        .append(vec![msg(&["alice", "bob", "carol"], None, 600, "3")])
        .await
        .unwrap();
    assert_eq!(
        seqs_of(&out),
        [("alice".into(), 2), ("bob".into(), 2), ("carol".into(), 1)],
        "alice keeps the seq this append reserved although the counter moved on to 3"
    );
    assert_eq!(count(&seen, "update", "counters"), 1, "one round");
    assert_eq!(count(&seen, "find", "counters"), 1, "one read-back");
    assert_eq!(
        count(&seen, "insert", "counters"),
        1,
        "carol's counter created"
    );
    assert_eq!(count(&seen, "findAndModify", "counters"), 0);
    let p = store.read(&user("alice"), 0, 10).await.unwrap();
    assert_eq!(
        (seqs(&p), p.last_seq),
        (vec![1, 2, 3], 3),
        "no seq twice, no gap"
    );
    fx.finish().await;
}

#[actix_rt::test]
async fn reservation_pushed_out_of_the_counter_log_before_its_read_back_is_a_gap_and_goes_again() {
    let fx = Fixture::new("evict");
    let other = fx.store().await;
    other
        .append(vec![msg(&["alice"], None, 600, "1")])
        .await
        .unwrap();
    // Eight later reservations push this append's entry out of alice's log of four.
    let (store, seen) = raced_store(&fx, other, 8).await;
    let out = store
        .append(vec![msg(&["alice"], None, 600, "3")])
        .await
        .unwrap();
    assert_eq!(seqs_of(&out), [("alice".into(), 11)]);
    assert_eq!(count(&seen, "update", "counters"), 2, "a second round");
    // Seq 2, reserved by the first round, is never stored: a reader (short budget) holds
    // back before it, then reads past it.
    let reader = MongoStore::connect(&MongoStoreConfig {
        op_timeout_ms: 200,
        ..fx.cfg.clone()
    })
    .await
    .unwrap();
    let p = reader.read(&user("alice"), 0, 20).await.unwrap();
    assert_eq!(
        (seqs(&p), p.held_back),
        (vec![1], true),
        "seq 2 may still come"
    );
    eventually("the gap at seq 2 is read past", || async {
        seqs(&reader.read(&user("alice"), 0, 20).await.unwrap()) == [1, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    })
    .await;
    fx.finish().await;
}

#[actix_rt::test]
async fn broadcasts_are_pushed_once_per_idempotency_key_and_only_keyed_ones_leave_a_marker() {
    let fx = Fixture::new("cast");
    let store = fx.store().await;
    let cast = |key: Option<&str>| NewMessage {
        target: Target::Broadcast,
        topic: None,
        payload: RawValue::from_string("\"hi\"".into()).unwrap(),
        ttl_s: 600,
        idempotency_key: key.map(String::from),
        arrived_us: 0,
    };
    let a = store.append(vec![cast(Some("b1"))]).await.unwrap();
    let frame = a[0].broadcast.clone().expect("a broadcast frame to push");
    assert_eq!(a[0].recipients, 0);
    assert!(frame.contains("\"broadcast\":true"));
    let again = store.append(vec![cast(Some("b1"))]).await.unwrap();
    assert!(again[0].duplicate && again[0].broadcast.is_none());
    assert_eq!(again[0].id, a[0].id);
    let unkeyed = store.append(vec![cast(None)]).await.unwrap();
    assert!(
        unkeyed[0].broadcast.is_some(),
        "an unkeyed broadcast is pushed"
    );
    let markers = fx.db().await.collection::<Document>("broadcasts");
    let marker = markers
        .find_one(doc! {"_id": &*a[0].id})
        .await
        .unwrap()
        .expect("the keyed broadcast's marker");
    assert!(marker.get("frame").is_none(), "broadcasts are live only");
    assert!(marker.get_datetime("expires_at").is_ok());
    let unkeyed_marker = markers
        .find_one(doc! {"_id": &*unkeyed[0].id})
        .await
        .unwrap();
    assert!(unkeyed_marker.is_none(), "no retry can complete it");
    fx.finish().await;
}

#[actix_rt::test]
async fn batch_of_1000_messages_to_100_users_is_one_insert_and_one_seq_round() {
    let fx = Fixture::new("bulk");
    let (store, seen) = fx.watched_store().await;
    let users: Vec<String> = (0..100).map(|i| format!("user{i}")).collect();
    let batch = |round: usize| -> Vec<NewMessage> {
        (0..1000)
            .map(|i| {
                let to = users[(i + round) % users.len()].as_str();
                msg(
                    &[to],
                    None,
                    600,
                    &format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(200)),
                )
            })
            .collect()
    };
    // The users' first messages also create their counters (10 seqs each).
    store.append(batch(0)).await.unwrap();
    seen.lock().unwrap().clear();
    let started = Instant::now();
    let out = store.append(batch(1)).await.unwrap();
    let took = started.elapsed();
    assert_eq!(out.len(), 1000);
    let insert = count(&seen, "insert", "messages");
    assert_eq!(insert, 1, "one insert for the whole batch");
    assert_eq!(
        count(&seen, "update", "counters"),
        1,
        "one command reserves the 100 users' seq blocks"
    );
    assert_eq!(
        count(&seen, "find", "counters"),
        1,
        "one read-back of the 100 reservations"
    );
    let all = seen.lock().unwrap().clone();
    assert_eq!(all.values().sum::<u64>(), 3, "nothing else: {all:?}");
    let mut next: HashMap<String, u64> = HashMap::new();
    for a in &out {
        let d = &a.deliveries[0];
        let want = next.entry(d.user.to_string()).or_insert(11);
        assert_eq!(d.seq, *want, "each user's seqs follow on, in batch order");
        *want += 1;
    }
    println!(
        "1000-message batch (100 users): {took:?}, {:.0} msg/s",
        1000.0 / took.as_secs_f64()
    );

    // Throughput, printed only: a few more big batches, then POST-sized appends.
    let started = Instant::now();
    for round in 2..=5 {
        store.append(batch(round)).await.unwrap();
    }
    let t = started.elapsed();
    println!(
        "4 x 1000-message batches: {:.0} msg/s",
        4000.0 / t.as_secs_f64()
    );
    let distinct: Vec<NewMessage> = (0..1000)
        .map(|i| msg(&[&format!("solo{i}")], None, 600, "1"))
        .collect();
    let started = Instant::now();
    store.append(distinct).await.unwrap();
    println!("1000-message batch to 1000 users: {:?}", started.elapsed());
    for (keyed, tasks) in [(false, 1), (true, 1), (false, 16), (true, 16)] {
        let rate = single_appends(&store, keyed, tasks, 320).await;
        println!("single-message appends, keyed={keyed}, {tasks} concurrent: {rate:.0} msg/s");
    }
    fx.finish().await;
}

/// Appends `total` one-message batches from `tasks` concurrent tasks; messages per second.
async fn single_appends(store: &MongoStore, keyed: bool, tasks: usize, total: usize) -> f64 {
    let per_task = total / tasks;
    let run = unique("k");
    let started = Instant::now();
    let work = (0..tasks).map(|w| {
        let run = &run;
        async move {
            for i in 0..per_task {
                let to = format!("user{}", (w * per_task + i) % 100);
                let key = keyed.then(|| format!("{run}-{w}-{i}"));
                store
                    .append(vec![msg(&[to.as_str()], key.as_deref(), 600, "{\"k\":1}")])
                    .await
                    .unwrap();
            }
        }
    });
    futures_util::future::join_all(work).await;
    (per_task * tasks) as f64 / started.elapsed().as_secs_f64()
}
