//! Races between appends on different nodes and a session's store reads, made to happen
//! on purpose (issue 13): a node with the MongoDB store, a session kept open, and a second
//! "node" played by the test, which reserves seq N in the counter and stores N's copy at the
//! worst moment. In every case the session must send N, then N+1, and skip nothing.
//!
//! Needs a MongoDB-protocol server: `HERALD_TEST_MONGO_URL` (`./scripts/test.sh` starts
//! one), or a private `secantusd-rs` started here.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::procs::shared_mongo;
use common::*;
use herald::frames::MessageParts;
use herald::store::mongo::{MongoStore, MongoStoreConfig};
use mongodb::bson::{doc, DateTime, Document};
use serde_json::json;

fn now_ms() -> i64 {
    DateTime::now().timestamp_millis()
}

/// The other node's side: reserving a seq and storing its copy, as `append.rs` does.
struct OtherNode {
    db: mongodb::Database,
}

impl OtherNode {
    async fn new(url: &str, database: &str) -> OtherNode {
        let client = mongodb::Client::with_uri_str(url).await.unwrap();
        OtherNode {
            db: client.database(database),
        }
    }

    /// Reserves the user's next seq (stamped now) and returns it.
    async fn reserve(&self, user: &str) -> u64 {
        let counters = self.db.collection::<Document>("counters");
        let _ = counters.insert_one(doc! {"_id": user, "seq": 0_i64}).await;
        let d = counters
            .find_one_and_update(
                doc! {"_id": user},
                doc! {"$inc": {"seq": 1_i64}, "$max": {"at": now_ms()}},
            )
            .return_document(mongodb::options::ReturnDocument::After)
            .await
            .unwrap()
            .unwrap();
        d.get_i64("seq").unwrap() as u64
    }

    /// Stores the copy of a message for `user` at `seq` (its seq was reserved at `at`).
    async fn store(&self, user: &str, seq: u64, at: i64, payload: &str) {
        let id = format!("other-{seq}");
        let frame =
            MessageParts::new(&id, None, &json!(payload).to_string(), at as u64, 0).frame(seq);
        self.db
            .collection::<Document>("messages")
            .insert_one(doc! {
                "_id": format!("{id}:{user}"), "user": user, "seq": seq as i64, "id": &id,
                "frame": frame.to_string(),
                "expires_at": DateTime::from_millis(now_ms() + 600_000), "at": at,
            })
            .await
            .unwrap();
    }
}

fn overrides<'a>(url: &'a str, db: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("HERALD_STORE__BACKEND", "mongo"),
        ("HERALD_STORE__MONGO__URL", url),
        ("HERALD_STORE__MONGO__DATABASE", db),
        ("HERALD_STORE__MONGO__OP_TIMEOUT_MS", "1000"),
    ]
}

/// Reads message frames until `n` have arrived; returns their (seq, payload).
async fn messages(ws: &mut Ws, n: usize) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        let m = ws.next_of_type("message").await;
        out.push((
            m["seq"].as_u64().unwrap(),
            m["payload"].as_str().unwrap().to_string(),
        ));
    }
    out
}

/// First race: N's copy is stored right after the gap read's query ran, before the page is
/// judged. The old read then counted the copy as "present, so expired" and went on to N+1.
#[actix_rt::test]
async fn copy_stored_between_a_page_query_and_its_verdict_is_still_sent_before_the_next() {
    let (url, _mp) = shared_mongo();
    let db = format!("races_find_{}", std::process::id());
    let other = Arc::new(OtherNode::new(&url, &db).await);
    let mut store = MongoStore::connect(&MongoStoreConfig {
        url: url.clone(),
        database: db.clone(),
        op_timeout_ms: 1000,
        ..MongoStoreConfig::default()
    })
    .await
    .unwrap();
    // Armed with the reserved seq and its stamp; fires once, after the next page query.
    let armed: Arc<std::sync::Mutex<Option<(u64, i64)>>> = Arc::default();
    let fired = Arc::new(AtomicBool::new(false));
    {
        let (armed, fired, other) = (armed.clone(), fired.clone(), other.clone());
        store.set_after_find(Arc::new(move |user| {
            let (armed, fired, other) = (armed.clone(), fired.clone(), other.clone());
            Box::pin(async move {
                let job = armed.lock().unwrap().take();
                if let Some((seq, at)) = job {
                    other
                        .store(user.as_str(), seq, at, "from the other node")
                        .await;
                    fired.store(true, Ordering::SeqCst);
                }
            })
        }));
    }
    let node = start_node_with_store(&overrides(&url, &db), Arc::new(store)).await;
    let mut ws = node.connect("rita", "since=0").await;
    ws.welcome().await;

    let at = now_ms();
    let n = other.reserve("rita").await;
    *armed.lock().unwrap() = Some((n, at));
    node.send("rita", json!("through this node")).await;

    assert_eq!(
        messages(&mut ws, 2).await,
        vec![
            (n, "from the other node".to_string()),
            (n + 1, "through this node".to_string())
        ]
    );
    assert!(fired.load(Ordering::SeqCst), "the race was made to happen");
    let (_, stats) = node.stats().await;
    assert_eq!(stats["counters"]["skipped"], 0, "{stats}");
    let _ = other.db.drop().await;
}

/// Second race: N is reserved before the session's first read and stored after it. The
/// counter (last_seq = N) is not evidence about N: the old session took it as "checked"
/// and skipped N when N+1's push arrived.
#[actix_rt::test]
async fn seq_reserved_before_a_read_and_stored_after_it_is_sent_before_the_next() {
    let (url, _mp) = shared_mongo();
    let db = format!("races_reserved_{}", std::process::id());
    let other = OtherNode::new(&url, &db).await;
    let node = start_node(&overrides(&url, &db)).await;

    let at = now_ms();
    let n = other.reserve("rosa").await;
    let mut ws = node.connect("rosa", "since=0").await;
    assert_eq!(
        ws.welcome().await["last_seq"],
        n,
        "the read saw the reservation"
    );
    node.send("rosa", json!("through this node")).await;
    // N+1 is live now; N lands a moment later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    other.store("rosa", n, at, "from the other node").await;

    assert_eq!(
        messages(&mut ws, 2).await,
        vec![
            (n, "from the other node".to_string()),
            (n + 1, "through this node".to_string())
        ]
    );
    let (_, stats) = node.stats().await;
    assert_eq!(stats["counters"]["skipped"], 0, "{stats}");
    let _ = other.db.drop().await;
}

/// The other side of the rule: a seq whose append gave up is passed over once its budget is
/// spent, and the skip is counted.
#[actix_rt::test]
async fn seq_whose_append_gave_up_is_passed_over_after_the_budget_and_counted() {
    let (url, _mp) = shared_mongo();
    let db = format!("races_gaveup_{}", std::process::id());
    let other = OtherNode::new(&url, &db).await;
    // Append budget: 5 x 200 ms.
    let mut o = overrides(&url, &db);
    o.push(("HERALD_STORE__MONGO__OP_TIMEOUT_MS", "200"));
    let node = start_node(&o).await;
    let mut ws = node.connect("rene", "since=0").await;
    ws.welcome().await;
    let n = other.reserve("rene").await;
    node.send("rene", json!("after the hole")).await;
    assert_eq!(
        messages(&mut ws, 1).await,
        vec![(n + 1, "after the hole".to_string())]
    );
    let (_, stats) = node.stats().await;
    assert_eq!(stats["counters"]["skipped"], 1, "{stats}");
    let _ = other.db.drop().await;
}
