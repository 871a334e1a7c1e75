//! The MongoDB store's read side against a real MongoDB wire-protocol server: pages in
//! order, retention, reads held back before a seq still on its way, expiry, cursors, and
//! failing fast when the server is unreachable or dies. Harness: `tests/mongo/mod.rs`.

use std::time::{Duration, Instant};

use herald::ids::DeviceId;
use herald::store::mongo::{MongoStore, MongoStoreConfig};
use herald::store::{CursorUpdate, MessageStore, StoreError};
use mongodb::bson::{doc, DateTime, Document};

mod mongo;
use mongo::*;

#[actix_rt::test]
async fn read_pages_after_a_seq_in_order_and_reports_what_retention_dropped() {
    let fx = Fixture::new("read");
    let cfg = MongoStoreConfig {
        max_messages_per_user: 3,
        ..fx.cfg.clone()
    };
    let store = MongoStore::connect(&cfg).await.unwrap();
    let nobody = store.read(&user("nobody"), 0, 10).await.unwrap();
    assert_eq!(
        (
            nobody.messages.len(),
            nobody.last_seq,
            nobody.first_retained
        ),
        (0, 0, 0)
    );

    let mut frames = Vec::new();
    for i in 0..5 {
        let a = store
            .append(vec![msg(&["alice"], None, 600, &format!("{{\"n\":{i}}}"))])
            .await
            .unwrap();
        frames.push(a[0].deliveries[0].frame.clone());
    }
    let p = store.read(&user("alice"), 0, 10).await.unwrap();
    assert_eq!((p.first_retained, p.last_seq), (3, 5));
    assert_eq!(seqs(&p), vec![3, 4, 5]);
    let read_frames: Vec<_> = p.messages.iter().map(|m| m.1.clone()).collect();
    assert_eq!(
        read_frames,
        frames[2..].to_vec(),
        "replayed frames are byte-identical"
    );
    assert_eq!(
        seqs(&store.read(&user("alice"), 3, 1).await.unwrap()),
        vec![4]
    );
    assert_eq!(
        seqs(&store.read(&user("alice"), 5, 10).await.unwrap()),
        Vec::<u64>::new()
    );
    assert!(store
        .read(&user("alice"), 0, 0)
        .await
        .unwrap()
        .messages
        .is_empty());

    // The dropped copies are also deleted from the collection, in the background.
    let db = fx.db().await;
    eventually("copies below the retention floor deleted", || async {
        db.collection::<Document>("messages")
            .count_documents(doc! {"user": "alice"})
            .await
            .unwrap()
            == 3
    })
    .await;
    fx.finish().await;
}

#[actix_rt::test]
async fn read_stops_before_a_reserved_seq_until_it_is_stored_or_its_append_gave_up() {
    let fx = Fixture::new("hole");
    let cfg = MongoStoreConfig {
        op_timeout_ms: 400,
        ..fx.cfg.clone()
    };
    let store = MongoStore::connect(&cfg).await.unwrap();
    let db = fx.db().await;
    let counters = db.collection::<Document>("counters");
    // Another node reserves a seq and has not stored it yet.
    let reserve_one = || async {
        counters
            .update_one(doc! {"_id": "alice"}, doc! {"$inc": {"seq": 1_i64}})
            .await
            .unwrap();
    };
    store
        .append(vec![msg(&["alice"], None, 600, "1")])
        .await
        .unwrap();
    reserve_one().await;
    store
        .append(vec![msg(&["alice"], None, 600, "3")])
        .await
        .unwrap();
    let p = store.read(&user("alice"), 0, 10).await.unwrap();
    assert_eq!(
        (seqs(&p), p.last_seq),
        (vec![1], 3),
        "seq 3 waits for seq 2"
    );

    // Seq 2 lands: the page goes on.
    let later = DateTime::from_millis(DateTime::now().timestamp_millis() + 600_000);
    db.collection::<Document>("messages")
        .insert_one(
            doc! {"_id": "slow:alice", "user": "alice", "seq": 2_i64, "id": "slow",
            "frame": "{}", "expires_at": later, "at": DateTime::now().timestamp_millis()},
        )
        .await
        .unwrap();
    assert_eq!(
        seqs(&store.read(&user("alice"), 0, 10).await.unwrap()),
        vec![1, 2, 3]
    );

    // Seq 4 never lands: once its append must have given up, pages skip it.
    reserve_one().await;
    store
        .append(vec![msg(&["alice"], None, 600, "5")])
        .await
        .unwrap();
    assert!(store
        .read(&user("alice"), 3, 10)
        .await
        .unwrap()
        .messages
        .is_empty());
    eventually("the gap at seq 4 is skipped", || async {
        seqs(&store.read(&user("alice"), 3, 10).await.unwrap()) == vec![5]
    })
    .await;
    fx.finish().await;
}

#[actix_rt::test]
async fn expired_messages_are_not_read_even_before_the_ttl_monitor_removes_them() {
    let fx = Fixture::new("ttl");
    let store = fx.store().await;
    store
        .append(vec![
            msg(&["alice"], None, 0, "1"),
            msg(&["alice"], None, 600, "2"),
        ])
        .await
        .unwrap();
    let p = store.read(&user("alice"), 0, 10).await.unwrap();
    assert_eq!(seqs(&p), vec![2]);
    assert_eq!(p.last_seq, 2);
    fx.finish().await;
}

#[actix_rt::test]
async fn cursors_only_move_forward_and_one_save_is_one_update_command() {
    let fx = Fixture::new("cur");
    let (store, seen) = fx.watched_store().await;
    let up = |u: &str, d: &str, seq| CursorUpdate {
        user: user(u),
        device: DeviceId::parse(d).unwrap(),
        seq,
    };
    let phone = DeviceId::parse("phone").unwrap();
    assert_eq!(store.cursor(&user("alice"), &phone).await.unwrap(), None);
    store
        .save_cursors(vec![
            up("alice", "phone", 3),
            up("alice", "laptop", 5),
            up("bob", "phone", 1),
            up("alice", "phone", 2),
        ])
        .await
        .unwrap();
    assert_eq!(
        count(&seen, "update", "cursors"),
        1,
        "one round trip for the batch"
    );
    store
        .save_cursors(vec![up("alice", "phone", 2)])
        .await
        .unwrap();
    assert_eq!(store.cursor(&user("alice"), &phone).await.unwrap(), Some(3));
    store
        .save_cursors(vec![up("alice", "phone", 9)])
        .await
        .unwrap();
    assert_eq!(store.cursor(&user("alice"), &phone).await.unwrap(), Some(9));
    assert_eq!(
        store
            .cursor(&user("alice"), &DeviceId::parse("laptop").unwrap())
            .await
            .unwrap(),
        Some(5)
    );
    assert_eq!(store.cursor(&user("bob"), &phone).await.unwrap(), Some(1));
    fx.finish().await;
}

#[actix_rt::test]
async fn unreachable_server_fails_with_unavailable_within_the_timeout() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = MongoStoreConfig {
        url: format!("mongodb://127.0.0.1:{port}/?directConnection=true"),
        op_timeout_ms: 300,
        ..MongoStoreConfig::default()
    };
    let started = Instant::now();
    let res = MongoStore::connect(&cfg).await;
    let took = started.elapsed();
    assert!(
        matches!(res, Err(StoreError::Unavailable(_))),
        "{:?}",
        res.err()
    );
    assert!(
        took < Duration::from_secs(5),
        "gave up after {took:?}, not a hang"
    );
}

#[actix_rt::test]
async fn store_whose_server_dies_answers_unavailable_within_the_timeout() {
    // Needs a server of its own to kill.
    let mut server = Server::start_own();
    let cfg = MongoStoreConfig {
        url: server.url.clone(),
        database: unique("ht_dies"),
        op_timeout_ms: 500,
        ..MongoStoreConfig::default()
    };
    let store = MongoStore::connect(&cfg).await.unwrap();
    store
        .append(vec![msg(&["alice"], None, 600, "1")])
        .await
        .unwrap();
    store.health().await.unwrap();
    server.stop();
    let started = Instant::now();
    let res = store.append(vec![msg(&["alice"], None, 600, "2")]).await;
    assert!(matches!(res, Err(StoreError::Unavailable(_))), "{res:?}");
    assert!(store.health().await.is_err());
    assert!(store.read(&user("alice"), 0, 10).await.is_err());
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "gave up after {took:?}, not a hang"
    );
}
