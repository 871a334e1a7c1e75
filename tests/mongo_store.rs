//! The MongoDB store's write path against a real MongoDB wire-protocol server: seqs under
//! concurrent writers, idempotency (including a first append that failed half-way), counter
//! repair and broadcasts. Seq reservation races and big batches: `tests/mongo_seqs.rs`.
//! Harness: `tests/mongo/mod.rs`.

use std::collections::{BTreeSet, HashMap};

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
