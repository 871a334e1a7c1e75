//! The MongoDB store against a real MongoDB wire-protocol server: seqs under concurrent
//! writers, idempotency (including a first append that failed half-way), reads, retention,
//! expiry, cursors, and failing fast when the server is gone.
//!
//! The server is `HERALD_TEST_MONGO_URL` when set (`./scripts/test.sh` starts one);
//! otherwise each test starts its own `secantusd-rs` (from `$HERALD_CACHE/secantus/bin`,
//! default `~/.cache/herald`, or `PATH`) on a free port in a temporary directory and stops
//! it at the end. Without either the tests fail, saying to run `./scripts/test.sh`. Every
//! test uses its own database, so they run in parallel.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use herald::ids::{DeviceId, UserId};
use herald::store::mongo::{MongoStore, MongoStoreConfig};
use herald::store::{CursorUpdate, MessageStore, NewMessage, StoreError, Target};
use mongodb::bson::{doc, DateTime, Document};
use mongodb::event::command::CommandEvent;
use mongodb::event::EventHandler;
use serde_json::value::RawValue;

/// Longest a test waits for a condition it polls for.
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// A MongoDB server for one test: shared (from the environment) or started here.
struct Server {
    url: String,
    /// The `secantusd-rs` this test started, stopped on drop.
    child: Option<Child>,
    /// Its data directory, removed on drop.
    dir: Option<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Server {
    /// The environment's server, or a fresh one.
    fn get() -> Server {
        match std::env::var("HERALD_TEST_MONGO_URL") {
            Ok(url) if !url.is_empty() => Server {
                url,
                child: None,
                dir: None,
            },
            _ => Server::start_own(),
        }
    }

    /// A `secantusd-rs` of this test's own (needed to kill it), on an ephemeral port.
    fn start_own() -> Server {
        let bin = secantusd().unwrap_or_else(|| {
            panic!(
                "no MongoDB test server: HERALD_TEST_MONGO_URL is unset and secantusd-rs is \
                 neither in $HERALD_CACHE/secantus/bin nor on PATH; run ./scripts/test.sh, \
                 which installs and starts it"
            )
        });
        let dir = std::env::temp_dir().join(format!("herald-mongo-{}", unique("d")));
        std::fs::create_dir_all(&dir).expect("create server data dir");
        let log = std::fs::File::create(dir.join("server.log")).expect("create server log");
        let mut child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", "0", "--storage-path"])
            .arg(dir.join("data"))
            .args(["--cache-size", "256M", "--log-file-max", "16MB"])
            .args(["--log-level", "WARNING"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        // It prints `… listening on 127.0.0.1:<port>` once ready; keep draining its stdout so
        // it never blocks on a full pipe.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.trim().to_string());
                    break;
                }
            }
            for _ in lines {}
        });
        let mut server = Server {
            url: String::new(),
            child: Some(child),
            dir: Some(dir),
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => server.url = format!("mongodb://{addr}"),
            Err(_) => panic!("secantusd-rs did not report its port within 30 s"),
        }
        server
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn secantusd() -> Option<PathBuf> {
    let cache = std::env::var_os("HERALD_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/herald")));
    let cached = cache.map(|c| c.join("secantus/bin/secantusd-rs"));
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("secantusd-rs"))
            .find(|f| f.is_file())
    });
    cached.filter(|p| p.is_file()).or(on_path)
}

/// A name unique in this machine's recent history: prefix, pid, time and a counter.
fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros();
    format!(
        "{prefix}_{}_{:x}_{}",
        std::process::id(),
        t & 0xffff_ffff,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A test's server and its own database.
struct Fixture {
    server: Server,
    cfg: MongoStoreConfig,
}

impl Fixture {
    fn new(test: &str) -> Fixture {
        let server = Server::get();
        let cfg = MongoStoreConfig {
            url: server.url.clone(),
            database: unique(&format!("ht_{test}")),
            ..MongoStoreConfig::default()
        };
        Fixture { server, cfg }
    }

    async fn store(&self) -> MongoStore {
        MongoStore::connect(&self.cfg)
            .await
            .expect("store connects")
    }

    /// A store that counts the commands it sends, by `(command, collection)`.
    async fn watched_store(&self) -> (MongoStore, Commands) {
        let seen: Commands = Arc::default();
        let sink = seen.clone();
        let store = MongoStore::connect_with(&self.cfg, move |o| {
            o.command_event_handler = Some(EventHandler::callback(move |ev| {
                if let CommandEvent::Started(s) = ev {
                    let coll = s
                        .command
                        .get_str(&s.command_name)
                        .unwrap_or_default()
                        .to_string();
                    *sink
                        .lock()
                        .unwrap()
                        .entry((s.command_name.clone(), coll))
                        .or_insert(0) += 1;
                }
            }))
        })
        .await
        .expect("store connects");
        (store, seen)
    }

    /// The test's database, for looking at what the store wrote.
    async fn db(&self) -> mongodb::Database {
        mongodb::Client::with_uri_str(&self.server.url)
            .await
            .expect("raw client")
            .database(&self.cfg.database)
    }

    /// Drops the test's database (a shared server stays small).
    async fn finish(self) {
        let _ = self.db().await.drop().await;
    }
}

type Commands = Arc<Mutex<HashMap<(String, String), u64>>>;

fn count(seen: &Commands, command: &str, coll: &str) -> u64 {
    let map = seen.lock().unwrap();
    map.get(&(command.to_string(), coll.to_string()))
        .copied()
        .unwrap_or(0)
}

fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn msg(users: &[&str], key: Option<&str>, ttl_s: u64, payload: &str) -> NewMessage {
    NewMessage {
        target: Target::Users(users.iter().map(|u| user(u)).collect()),
        topic: Some("t".into()),
        payload: RawValue::from_string(payload.into()).unwrap(),
        ttl_s,
        idempotency_key: key.map(String::from),
    }
}

fn seqs(page: &herald::store::Page) -> Vec<u64> {
    page.messages.iter().map(|m| m.0).collect()
}

/// Polls `check` until it holds, failing after [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Behaviour
// ---------------------------------------------------------------------------------------

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
    // Each node is a thread with its own runtime and its own client, like a real node.
    let nodes: Vec<_> = (0..NODES)
        .map(|_| {
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                actix_rt::System::new().block_on(async move {
                    let store = MongoStore::connect(&cfg).await.expect("store connects");
                    let tasks = (0..TASKS).map(|_| async {
                        let mut got = Vec::new();
                        for _ in 0..APPENDS {
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
    let delivered: Vec<(String, u64, String)> = nodes
        .into_iter()
        .flat_map(|n| n.join().expect("node thread"))
        .collect();

    actix_rt::System::new().block_on(async move {
        // A reader with a short budget: it reads over gaps (seqs reserved but never stored)
        // once they are a budget old rather than waiting for them.
        let reader = MongoStoreConfig {
            op_timeout_ms: 200,
            ..cfg.clone()
        };
        let store = MongoStore::connect(&reader).await.unwrap();
        for (name, expected) in [
            ("alice", NODES * TASKS * APPENDS * 2),
            ("bob", NODES * TASKS * APPENDS),
        ] {
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
            assert_eq!(
                stored,
                unique.iter().copied().collect::<Vec<_>>(),
                "{name}: stored = delivered"
            );
            let ids: HashMap<u64, &str> = mine.iter().map(|d| (d.1, d.2.as_str())).collect();
            for (seq, frame) in &page.messages {
                let f: serde_json::Value = serde_json::from_str(frame).unwrap();
                assert_eq!(f["seq"], *seq);
                assert_eq!(
                    f["id"], ids[seq],
                    "{name}: seq {seq} holds the message it was given to"
                );
            }
            assert!(page.last_seq >= *stored.last().unwrap());
        }
        fx.finish().await;
    });
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
        (d[0].seq, &*d[0].frame),
        (1, "{\"stored\":1}"),
        "alice's stored copy is reused"
    );
    assert!(d[1].frame.contains("\"id\":\"first-id\""));
    assert!(
        d[1].frame.ends_with(&format!(",\"ts\":{first_ts}}}")),
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
async fn broadcasts_are_kept_in_history_and_honour_idempotency_keys() {
    let fx = Fixture::new("cast");
    let store = fx.store().await;
    let cast = |key: Option<&str>| NewMessage {
        target: Target::Broadcast,
        topic: None,
        payload: RawValue::from_string("\"hi\"".into()).unwrap(),
        ttl_s: 600,
        idempotency_key: key.map(String::from),
    };
    let a = store.append(vec![cast(Some("b1"))]).await.unwrap();
    let frame = a[0].broadcast.clone().expect("a broadcast frame to push");
    assert_eq!(a[0].recipients, 0);
    assert!(frame.contains("\"broadcast\":true"));
    let again = store.append(vec![cast(Some("b1"))]).await.unwrap();
    assert!(again[0].duplicate && again[0].broadcast.is_none());
    assert_eq!(again[0].id, a[0].id);
    let stored = fx
        .db()
        .await
        .collection::<Document>("broadcasts")
        .find_one(doc! {"_id": &*a[0].id})
        .await
        .unwrap()
        .expect("broadcast in history");
    assert_eq!(stored.get_str("frame").unwrap(), &*frame);
    fx.finish().await;
}

#[actix_rt::test]
async fn batch_of_1000_messages_is_one_insert_command() {
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
    // The users' first messages also create their counters.
    store.append(batch(0)).await.unwrap();
    seen.lock().unwrap().clear();
    let started = Instant::now();
    let out = store.append(batch(1)).await.unwrap();
    let took = started.elapsed();
    assert_eq!(out.len(), 1000);
    let insert = count(&seen, "insert", "messages");
    assert_eq!(insert, 1, "one insert for the whole batch");
    let reserve = count(&seen, "findAndModify", "counters");
    assert_eq!(reserve, 100, "one seq block per distinct user");
    assert_eq!(
        seen.lock().unwrap().values().sum::<u64>(),
        101,
        "nothing else"
    );
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
