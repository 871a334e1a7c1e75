//! Step 2 of the write path (see `append.rs`): a block of seqs for every distinct user of a
//! batch, for all of them in two round trips, whatever their number.
//!
//! # One multi-document update, then a read-back
//!
//! A round tags itself with a random 64-bit `tag` and sends one `update` command holding
//! one multi-document statement per distinct count `n` (in practice one or two):
//!
//! ```text
//! {q: {_id: {$in: <users needing n>}}, multi: true, u: [{$set: {
//!     seq: {$add: ["$seq", n]},
//!     at:  {$max: ["$at", <now>]},
//!     l:   {$concatArrays: [{$slice: [{$ifNull: ["$l", []]}, -6]},
//!                           [<tag>, {$add: ["$seq", n]}]]}}}]}
//! ```
//!
//! Each counter document is updated atomically, so its `seq` moves by exactly `n` and the
//! entry appended to its reservation log `l` records the block's last seq `s` as that very
//! update computed it: the block `s - n + 1 ..= s` is this append's alone, exactly as if
//! `findAndModify $inc` had returned it. One `find` of the users' logs then reads the `s`
//! of this round's tag for each user. A user without a counter is not matched; the
//! read-back finds no document and one unordered `insert` creates its counter at `n` (a
//! duplicate key means another append created it meanwhile: next round). A user whose
//! entry was pushed out of its log of [`LOG_LEN`] by as many later reservations before the
//! read-back also goes round again, its block a gap. After [`ROUNDS`] rounds the users
//! still without a block take one `findAndModify {$inc}` each.
//!
//! The counter keeps its meaning for the read side: `seq` is the newest seq handed out and
//! `at` is stamped (`$max`) before each reservation, so `read.rs`'s evidence is unchanged.
//! `s` is absolute, so writers that do not log (the fallback `$inc`, the counter repair's
//! `$max`, a node of an older version during a rolling upgrade) cannot make it wrong.
//!
//! The log is flat, `[tag, s, tag, s, …]`, the newest [`LOG_LEN`] (4) pairs: SecantusDB
//! diffs every document a pipeline update changes to describe the change, and a log of
//! sub-documents made that diff most of the update's cost (store CPU per user of a batch:
//! 8 `{t, s}` entries ~55-80 µs, 4 flat pairs ~30 µs, a plain `$inc` without any log
//! ~20-38 µs). Four are plenty: a node reserves one batch at a time (`turns.rs`), so only
//! reservations of other nodes can come between an update and its read-back. Versions
//! before the flat log kept `r: [{t, s}]` (8 entries); they still find their own entries
//! there while a rolling upgrade runs, and this version neither reads nor writes `r`:
//! both logs record absolute seqs, so neither version's writes can make the other's wrong.
//!
//! Measured on SecantusDB (store CPU per user of a 16-user batch): `findAndModify` per
//! user ~165 µs; a compare-and-set `update` with one upsert statement per user plus the
//! read before it ~110 µs; this multi-document update plus its read-back ~45 µs (~35 at
//! 200 users). Rejected alternatives:
//! - `$inc` for many users in one `update`, then a read: another node's increment between
//!   the two makes the values read wrong; only a tag written with the value is safe.
//! - Compare-and-set statements (`{_id, seq: <read>}` with upsert, a moved counter failing
//!   alone as a duplicate key): correct, but one statement per user costs more than twice
//!   as much on SecantusDB, needs a read first, and under contention all but one racing
//!   appends lose the round.
//! - Optimistic seqs guarded by the unique `(user, seq)` index of `messages`: a copy that
//!   loses its seq after a later copy of the same user won would have to take a higher seq
//!   (breaking the batch's per-user order), and a slow append could store a seq below one
//!   already delivered; the counter (the read side's `last_seq` and hole evidence) would
//!   also trail the stored copies.
//! - Per-user ownership by one node: needs appends routed between nodes and fails over with
//!   the owner; the store alone cannot provide it.
//!
//! A command retried after a lost reply reserves again under the same tag; the read-back
//! takes the newest entry and the earlier block stays a gap, as a retried `$inc` did.

use std::collections::HashMap;
use std::future::IntoFuture;

use futures_util::{StreamExt, TryStreamExt};
use mongodb::bson::{doc, Document};
use mongodb::options::ReturnDocument;
use tracing::debug;

use super::append::{Fate, Item};
use super::error::{duplicate_indices, is_duplicate_key, MongoError};
use super::reservation::{parse_log, Block, Log, Reservation, LOG_LEN};
use super::{call, check_write_reply, seq_field, to_i64, MongoStore};
use crate::clock::now_ms;
use crate::ids::{Seq, UserId};
use crate::store::{NewMessage, Target};

/// Rounds of update and read-back before the users still without a block fall back to
/// one increment each.
const ROUNDS: usize = 3;
/// Fallback increments in flight at once.
const INC_CONCURRENCY: usize = 16;
/// Most users in one statement or read-back (an id is at most 128 bytes: a command stays
/// far below the server's 16 MiB).
const CHUNK: usize = 10_000;

impl MongoStore {
    /// Reserves a block of seqs per distinct user of the batch, in batch order within it.
    pub(super) async fn reserve_seqs(
        &self,
        batch: &[NewMessage],
        items: &[Item],
    ) -> Result<HashMap<UserId, Block>, MongoError> {
        let mut need: HashMap<&UserId, u64> = HashMap::new();
        for (msg, item) in batch.iter().zip(items) {
            if let (Fate::Store { .. }, Target::Users(users)) = (&item.fate, &msg.target) {
                for user in users.iter().filter(|u| !item.stored.contains_key(*u)) {
                    *need.entry(user).or_insert(0) += 1;
                }
            }
        }
        let mut res = Reservation::new(need.into_iter().map(|(u, n)| (u.clone(), n)).collect());
        for round in 0..ROUNDS {
            if res.is_done() {
                break;
            }
            // A fresh tag per round; 62 random bits of a v7 uuid.
            let tag = uuid::Uuid::now_v7().as_u64_pair().1 as i64;
            self.advance_counters(&res, tag).await?;
            if let Some(hook) = &self.after_counters {
                for (user, _) in res.pending() {
                    hook(user.clone()).await;
                }
            }
            let logs = self.read_logs(res.pending()).await?;
            let create = res.settle_round(tag, &logs);
            if !create.is_empty() {
                let dups = self.create_counters(&create, tag).await?;
                res.settle_created(&create, &dups);
            }
            if !res.is_done() {
                debug!(
                    round,
                    users = res.pending().len(),
                    "seq reservations to repeat"
                );
            }
        }
        // Still without a block: one increment each (owned users: a stream closure over
        // borrowed ones trips the `Send` check of the boxed `append` future,
        // rust-lang/rust#102211).
        let rest: Vec<(UserId, u64)> = res.pending().to_vec();
        let incremented: Vec<(UserId, Seq)> = futures_util::stream::iter(rest)
            .map(|(user, n)| async move {
                let last = self.increment(&user, n).await?;
                Ok::<_, MongoError>((user, last))
            })
            .buffer_unordered(INC_CONCURRENCY)
            .try_collect()
            .await?;
        for (user, last) in &incremented {
            res.incremented(user, *last);
        }
        Ok(res.into_blocks())
    }

    /// The round's `update` command: one multi-document statement per count (and per
    /// [`CHUNK`] users), tagged `tag`.
    async fn advance_counters(&self, res: &Reservation, tag: i64) -> Result<(), MongoError> {
        const OP: &str = "reserve seqs";
        // Stamped before the reservation, and so no earlier than this append's start: a
        // reader takes the counter as final one budget after the latest stamp (`read.rs`).
        let at = to_i64(now_ms());
        // The newest LOG_LEN - 1 pairs stay, this round's pair follows.
        let keep = -(2 * (LOG_LEN as i64 - 1));
        let mut updates: Vec<Document> = Vec::new();
        for (n, users) in res.by_count() {
            let n = to_i64(n);
            for chunk in users.chunks(CHUNK) {
                let ids: Vec<&str> = chunk.iter().map(|u| u.as_str()).collect();
                updates.push(doc! {
                    "q": {"_id": {"$in": ids}},
                    "u": [{"$set": {
                        "seq": {"$add": ["$seq", n]},
                        "at": {"$max": ["$at", at]},
                        "l": {"$concatArrays": [
                            {"$slice": [{"$ifNull": ["$l", []]}, keep]},
                            [tag, {"$add": ["$seq", n]}],
                        ]},
                    }}],
                    "multi": true,
                });
            }
        }
        let cmd = doc! {
            "update": self.counters.name(),
            "updates": updates,
            "ordered": false,
            "writeConcern": self.write_concern.clone(),
        };
        let reply = call(self.op_timeout, OP, || {
            self.db.run_command(cmd.clone()).into_future()
        })
        .await?;
        check_write_reply(OP, &reply)
    }

    /// The reservation logs of those of `users` that have a counter.
    async fn read_logs(&self, users: &[(UserId, u64)]) -> Result<HashMap<String, Log>, MongoError> {
        const OP: &str = "read seq reservations";
        let ids: Vec<&str> = users.iter().map(|(u, _)| u.as_str()).collect();
        let found = self.counters_by_id(&ids, doc! {"l": 1}, OP).await?;
        let mut logs = HashMap::with_capacity(found.len());
        for d in &found {
            let id = d
                .get_str("_id")
                .map_err(|_| MongoError::reply(OP, "counter without an id"))?;
            logs.insert(id.to_string(), parse_log(d, OP)?);
        }
        Ok(logs)
    }

    /// Inserts the counters of users that had none, at their counts; answers the indices
    /// of those another append created first.
    async fn create_counters(
        &self,
        create: &[(UserId, u64)],
        tag: i64,
    ) -> Result<Vec<usize>, MongoError> {
        let at = to_i64(now_ms());
        let docs: Vec<Document> = create
            .iter()
            .map(|(user, n)| {
                doc! {"_id": user.as_str(), "seq": to_i64(*n), "at": at,
                "l": [tag, to_i64(*n)]}
            })
            .collect();
        call(self.op_timeout, "create seq counters", || async {
            match self.counters.insert_many(&docs).ordered(false).await {
                Ok(_) => Ok(Vec::new()),
                Err(e) => duplicate_indices(&e).ok_or(e),
            }
        })
        .await
    }

    /// Adds `n` to `user`'s counter and returns the new value. A user's first message
    /// creates the counter at 0 with an insert (a racing creator's duplicate key is fine)
    /// and increments again, rather than upserting: SecantusDB, the test server, sometimes
    /// answers `value: null` to one of several racing upserts although it incremented, which
    /// would leave a gap; MongoDB handles either way.
    async fn increment(&self, user: &UserId, n: u64) -> Result<Seq, MongoError> {
        let op = "reserve seqs";
        let updated = call(self.op_timeout, op, || async {
            for _ in 0..2 {
                // Stamped before the reservation, like the compare-and-set's.
                let at = to_i64(now_ms());
                let bumped = self
                    .counters
                    .find_one_and_update(
                        doc! {"_id": user.as_str()},
                        doc! {"$inc": {"seq": to_i64(n)}, "$max": {"at": at}},
                    )
                    .return_document(ReturnDocument::After)
                    .projection(doc! {"seq": 1})
                    .await?;
                if bumped.is_some() {
                    return Ok(bumped);
                }
                match self
                    .counters
                    .insert_one(doc! {"_id": user.as_str(), "seq": 0_i64})
                    .await
                {
                    Err(e) if !is_duplicate_key(&e) => return Err(e),
                    _ => {}
                }
            }
            Ok(None)
        })
        .await?
        .ok_or_else(|| MongoError::reply(op, "counter vanished after it was created"))?;
        seq_field(&updated, "seq", op)
    }
}
