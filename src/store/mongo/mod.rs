//! MongoDB message store: the cluster backend of [`MessageStore`], through the official
//! `mongodb` driver. Any number of nodes may write at once; per-user seqs come from one
//! counter document per user, moved for every user of a batch by one command and read
//! back by one query (`seqs.rs`), and every write an append's answer depends on waits for
//! the configured write concern.
//!
//! # Collections and indexes
//!
//! All are created, with their indexes, idempotently by [`MongoStore::connect`].
//!
//! | collection | one document | indexes |
//! | --- | --- | --- |
//! | `messages` | one user's copy of a message: `{_id: "<id>:<user>", user, seq: long, frame, expires_at: Date, at: long}`; `frame` is the exact WebSocket frame, so replay is byte-identical to the live push; `at` (unix ms) is when its seq was reserved | `_id` (also serves `locate`, a message's delivery status: the range [`<id>:`, `<id>;`)); unique `user_seq` `{user: 1, seq: 1}` (serves every read); TTL `expires_at_ttl` `{expires_at: 1}`, expireAfterSeconds 0 |
//! | `counters` | `{_id: user, seq: long, at: long, l: [tag: long, s: long, …]}`: the newest seq handed out to the user, when (unix ms) the latest block was reserved (see `read.rs`), and the last 4 reservations as flat pairs (a round's random tag and its block's last seq), from which an append reads back the block its multi-document update reserved (see `seqs.rs`; counters written by earlier versions also hold `r`, their log of 8 `{t, s}`, no longer used) | `_id` |
//! | `idempotency` | a claimed key: `{_id: key, id, ts: long, recipients: long, state: "pending" \| "done", expires_at: Date}` | `_id`; TTL `expires_at_ttl`, expireAfterSeconds 0 |
//! | `cursors` | a device's ack position: `{_id: "<user>/<device>", user, device, seq: long}` | `_id` (also serves all of a user's cursors: the `_id` range [`<user>/`, `<user>0`)) |
//! | `broadcasts` | one marker per stored broadcast with an idempotency key: `{_id: id, expires_at: Date}`, kept as long as its claim. Broadcasts are live only and never replayed (no frame is kept); the marker's unique `_id` is how an idempotent retry that completes an earlier append learns that the broadcast was already stored (and possibly pushed), so it is not pushed twice | `_id`; TTL `expires_at_ttl`, expireAfterSeconds 0 |
//!
//! Each index of `messages` costs every copy stored (on SecantusDB about 10-15 µs of
//! server CPU per copy and index), so there are no others: earlier versions kept a message's
//! id in an `id` field with its own index; new copies lack the field, and an `id` index
//! left from them can be dropped (`db.messages.dropIndex("id")`) once every node runs this
//! version (an older node's delivery-status lookups miss the copies newer nodes store).
//!
//! Every TTL index is on an absolute `expires_at` with expireAfterSeconds 0, so changing a
//! TTL or the idempotency window never needs an index rebuilt. The TTL monitor deletes
//! expired documents about once a minute; reads filter on `expires_at` themselves, so an
//! expired message is never returned. `/` and `:` separate ids inside `_id`s: `/` cannot
//! occur in a user or device id, and a message id is a UUID.
//!
//! # Retention
//!
//! A user keeps its newest `max_messages_per_user` seqs: a read never returns a seq at or
//! below `last_seq - max_messages_per_user`, and reports the one above as `first_retained`,
//! exactly like the memory store. The documents below that floor are deleted in the
//! background (`retention.rs`) each time a user's seq crosses a multiple of a tenth of the
//! limit, so the collection holds at most about 1.1 times the limit per user. Broadcast
//! markers and cursors are only bounded by TTL (markers) or not at all (one small cursor
//! document per device).
//!
//! # Seq gaps
//!
//! A user's seqs strictly increase but may skip a number: a seq block whose insert then
//! failed (the append answered 503), a counter move retried after a lost reply, or
//! two appends of one idempotency key racing (the copy stored second is dropped). A read
//! stops before a missing seq while it may still be stored, and reads past it after that
//! (see `read.rs`).
//!
//! The write path and its idempotency scheme are described in `append.rs` (claims in
//! `claims.rs`; seq reservation, and why it is done this way, in `seqs.rs`), the read
//! path and how it treats a seq still on its way in `read.rs`, the lookup of one message's
//! copies by id in `locate.rs`.

mod append;
mod calls;
mod claims;
mod copies;
mod cursors;
mod error;
mod locate;
mod read;
mod reservation;
mod retention;
mod seqs;
mod turns;

use std::future::{Future, IntoFuture};
use std::time::Duration;

use async_trait::async_trait;
use mongodb::bson::{doc, Document, RawDocumentBuf};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};

use self::calls::{call, check_write_reply, seq_field, to_i64, AsRawOrDoc};
use self::error::MongoError;
use self::retention::Trimmer;
use super::{
    Accepted, CursorUpdate, DeviceCursor, MessageCopy, MessageStore, NewMessage, Page, StoreError,
};
pub use crate::config::{MongoStoreConfig, APPEND_BUDGET_CALLS};
use crate::ids::{DeviceId, MessageId, Seq, UserId};

/// Shortest wait for the startup index builds (longer than `op_timeout` when that is short).
const INDEX_TIMEOUT: Duration = Duration::from_secs(10);

/// The MongoDB [`MessageStore`].
pub struct MongoStore {
    db: Database,
    /// Message copies, raw so inserts and reads skip a `Document` tree.
    messages: Collection<RawDocumentBuf>,
    counters: Collection<Document>,
    /// Idempotency claims.
    claims: Collection<Document>,
    cursors: Collection<Document>,
    broadcasts: Collection<RawDocumentBuf>,
    /// The write concern as a command field, for the raw `update` commands.
    write_concern: Document,
    max_per_user: u64,
    idempotency_window_ms: u64,
    /// Budget of one call, retries included.
    op_timeout: Duration,
    /// Deletes messages that fell out of retention, in the background.
    trimmer: Trimmer,
    /// Concurrent appends reserve one at a time and answer in that order (`turns.rs`).
    turns: turns::Turns,
    /// Test hook run between a page's query and its verdict (see [`AfterFind`]).
    after_find: Option<AfterFind>,
    /// Test hook run between a seq round's counter read and its compare-and-set.
    after_counters: Option<AfterFind>,
}

/// A hook a test installs to act (say, store a racing copy) right after a page's query
/// returned and before the page is judged.
pub type AfterFind = std::sync::Arc<
    dyn Fn(UserId) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync,
>;

impl MongoStore {
    /// Connects, checks the server answers, and creates the collections' indexes.
    /// An unreachable server fails within about `op_timeout_ms` per step.
    pub async fn connect(cfg: &MongoStoreConfig) -> Result<MongoStore, StoreError> {
        Self::connect_with(cfg, |_| {}).await
    }

    /// [`connect`](Self::connect), letting `tune` adjust the driver options last (tests use it
    /// to watch the commands sent).
    pub async fn connect_with(
        cfg: &MongoStoreConfig,
        tune: impl FnOnce(&mut ClientOptions),
    ) -> Result<MongoStore, StoreError> {
        Ok(Self::open(cfg, tune).await?)
    }

    async fn open(
        cfg: &MongoStoreConfig,
        tune: impl FnOnce(&mut ClientOptions),
    ) -> Result<MongoStore, MongoError> {
        let bad = |(key, reason)| MongoError::Config { key, reason };
        cfg.validate().map_err(bad)?;
        let write_concern = cfg.write_concern().map_err(bad)?;
        let op_timeout = cfg.op_timeout();
        // Parsing may resolve DNS (mongodb+srv), so it gets the same budget as a call.
        let mut opts = tokio::time::timeout(op_timeout, ClientOptions::parse(&cfg.url))
            .await
            .map_err(|_| MongoError::Timeout {
                op: "resolve url",
                ms: cfg.op_timeout_ms,
            })?
            .map_err(|e| MongoError::Config {
                key: "store.mongo.url",
                reason: e.kind.to_string(),
            })?;
        opts.server_selection_timeout.get_or_insert(op_timeout);
        opts.connect_timeout.get_or_insert(op_timeout);
        opts.max_pool_size.get_or_insert(cfg.max_pool_size);
        opts.app_name.get_or_insert_with(|| "herald".into());
        opts.write_concern = Some(write_concern.clone());
        tune(&mut opts);
        let client = Client::with_options(opts).map_err(MongoError::driver("create client"))?;
        let db = client.database(&cfg.database);
        let wc_doc = mongodb::bson::to_document(&write_concern)
            .map_err(|e| MongoError::reply("write concern", e.to_string()))?;
        let messages = db.collection::<RawDocumentBuf>("messages");
        let store = MongoStore {
            trimmer: Trimmer::new(
                messages.clone(),
                op_timeout,
                cfg.max_messages_per_user as u64,
            ),
            messages,
            counters: db.collection("counters"),
            claims: db.collection("idempotency"),
            cursors: db.collection("cursors"),
            broadcasts: db.collection("broadcasts"),
            db,
            write_concern: wc_doc,
            max_per_user: cfg.max_messages_per_user as u64,
            idempotency_window_ms: cfg.idempotency_window_s.saturating_mul(1000),
            op_timeout,
            after_find: None,
            after_counters: None,
            turns: turns::Turns::default(),
        };
        store.ensure_indexes().await?;
        Ok(store)
    }

    /// Installs a hook run after every page query (tests make races happen with it).
    #[doc(hidden)]
    pub fn set_after_find(&mut self, hook: AfterFind) {
        self.after_find = Some(hook);
    }

    /// Installs a hook run, for each user, after a seq round read the counters and before
    /// it moves them (tests make racing reservations with it).
    #[doc(hidden)]
    pub fn set_after_counters(&mut self, hook: AfterFind) {
        self.after_counters = Some(hook);
    }

    async fn after_find(&self, user: &UserId) {
        if let Some(hook) = &self.after_find {
            hook(user.clone()).await;
        }
    }

    /// Creates every index of the module docs; an existing identical index is left alone.
    async fn ensure_indexes(&self) -> Result<(), MongoError> {
        let ttl = || {
            IndexModel::builder()
                .keys(doc! {"expires_at": 1})
                .options(
                    IndexOptions::builder()
                        .name("expires_at_ttl".to_string())
                        .expire_after(Duration::ZERO)
                        .build(),
                )
                .build()
        };
        let user_seq = IndexModel::builder()
            .keys(doc! {"user": 1, "seq": 1})
            .options(
                IndexOptions::builder()
                    .name("user_seq".to_string())
                    .unique(true)
                    .build(),
            )
            .build();
        // Index builds answer slower than reads and writes on a busy server; an unreachable
        // one still fails within op_timeout (the driver's server selection timeout).
        let t = self.op_timeout.max(INDEX_TIMEOUT);
        tokio::try_join!(
            call(t, "create message indexes", || self
                .messages
                .create_indexes([user_seq.clone(), ttl()])
                .into_future()),
            call(t, "create idempotency index", || self
                .claims
                .create_index(ttl())
                .into_future()),
            call(t, "create broadcast index", || self
                .broadcasts
                .create_index(ttl())
                .into_future()),
        )?;
        Ok(())
    }
}

#[async_trait]
impl MessageStore for MongoStore {
    async fn append(&self, batch: Vec<NewMessage>) -> Result<Vec<Accepted>, StoreError> {
        let budget = self.op_timeout * APPEND_BUDGET_CALLS;
        match tokio::time::timeout(budget, self.append_batch(batch)).await {
            Ok(res) => Ok(res?),
            Err(_) => Err(MongoError::Timeout {
                op: "append",
                ms: budget.as_millis() as u64,
            }
            .into()),
        }
    }

    async fn read(&self, user: &UserId, after: Seq, limit: usize) -> Result<Page, StoreError> {
        Ok(self.read_page(user, after, limit).await?)
    }

    async fn last_seq(&self, user: &UserId) -> Result<Seq, StoreError> {
        Ok(self.load_counter(user).await?.seq)
    }

    async fn last_seqs(&self, users: &[UserId]) -> Result<Vec<Seq>, StoreError> {
        Ok(self.load_counters(users).await?)
    }

    async fn cursor(&self, user: &UserId, device: &DeviceId) -> Result<Option<Seq>, StoreError> {
        Ok(self.load_cursor(user, device).await?)
    }

    async fn save_cursors(&self, updates: Vec<CursorUpdate>) -> Result<(), StoreError> {
        Ok(self.store_cursors(&updates).await?)
    }

    async fn locate(&self, id: &MessageId) -> Result<Vec<MessageCopy>, StoreError> {
        Ok(self.find_copies_of(id).await?)
    }

    async fn device_cursors(&self, users: &[UserId]) -> Result<Vec<DeviceCursor>, StoreError> {
        Ok(self.load_device_cursors(users).await?)
    }

    async fn health(&self) -> Result<(), StoreError> {
        call(self.op_timeout, "ping", || {
            self.db.run_command(doc! {"ping": 1}).into_future()
        })
        .await?;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "mongo"
    }
}
