//! The MongoDB store's seq reservation against a real MongoDB wire-protocol server: a
//! counter moved by another node between a round's update and its read-back, a reservation
//! pushed out of the counter's log, and a big batch as one insert and one seq round (with
//! throughput printed, not asserted). Harness: `tests/mongo/mod.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use herald::store::mongo::{MongoStore, MongoStoreConfig};
use herald::store::{MessageStore, NewMessage};

mod mongo;
use mongo::*;

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
