//! Step 2 of the write path (see `append.rs`): a block of seqs for every distinct user of a
//! batch, for all of them in two round trips, whatever their number.
//!
//! # Read, then compare-and-set
//!
//! A round reads every pending user's counter in one `find` (`_id: {$in: …}`), then sends
//! one `update` command (unordered) with one statement per user:
//!
//! ```text
//! {q: {_id: <user>, seq: <seq read>}, u: {$set: {seq: <seq read + n>}, $max: {at: <now>}},
//!  upsert: true}
//! ```
//!
//! A statement that matches moved the counter from exactly the value read, atomically (one
//! document), so the block `read + 1 ..= read + n` is this append's alone, exactly as if
//! `$inc` had returned it. One that does not match (another append moved the counter since
//! the read) turns into an insert of a second document with the same `_id`, which fails
//! with a duplicate key *at that statement's index*: that is how one command tells each
//! user's outcome (a plain update only reports how many matched). A user without a counter
//! is read as 0, and its statement creates the counter. Users whose statement lost are read
//! and tried again, [`CAS_ROUNDS`] times; those still contended after that (many writers on
//! one user at once) take one atomic `findAndModify {$inc}` each, which always succeeds.
//!
//! The counter keeps its meaning for the read side: `seq` is the newest seq handed out and
//! `at` is stamped (`$max`) before each reservation, so `read.rs`'s evidence is unchanged.
//!
//! Rejected alternatives:
//! - `$inc` for many users in one `update`/`bulkWrite`: it cannot say which values each
//!   statement got, and reading them back afterwards races with other nodes.
//! - Optimistic seqs guarded by the unique `(user, seq)` index of `messages`: a copy that
//!   loses its seq to another node after a later copy of the same user in the same batch
//!   won would have to take a higher seq, breaking the batch's per-user order, and the
//!   counter (the read side's `last_seq` and hole evidence) would trail the stored copies.
//! - Per-user ownership by one node: needs routing of appends between nodes and fails over
//!   with the owner; the store alone cannot provide it.
//!
//! A statement retried after a lost reply finds its own earlier move and loses: its block
//! stays a gap, as a retried `$inc` did. MongoDB retries an upsert that hit a duplicate key
//! only when the query's fields are exactly the unique index's (`_id` alone); `seq` in the
//! query rules that out, and no server may turn the failed insert into a success.

use std::collections::HashMap;
use std::future::IntoFuture;

use futures_util::{StreamExt, TryStreamExt};
use mongodb::bson::{doc, Document};
use mongodb::options::ReturnDocument;
use tracing::debug;

use super::append::{Fate, Item};
use super::error::{duplicate_statements, is_duplicate_key, MongoError};
use super::{call, seq_field, to_i64, MongoStore};
use crate::clock::now_ms;
use crate::ids::{Seq, UserId};
use crate::store::{NewMessage, Target};

/// Rounds of read and compare-and-set before the users still contended fall back to one
/// increment each.
const CAS_ROUNDS: usize = 3;
/// Fallback increments in flight at once.
const INC_CONCURRENCY: usize = 16;
/// Most users in one `find` or `update` command: a statement is about 100 bytes, so a
/// command stays far below the server's 100 000 statements and 16 MiB.
const CAS_CHUNK: usize = 10_000;

/// A user's block: its first seq and how many.
pub(super) type Block = (Seq, u64);

/// One compare-and-set: move `user`'s counter from `from` (as read; 0 when it had none) to
/// `from + n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Step {
    pub user: UserId,
    pub from: Seq,
    pub n: u64,
}

/// The reservation of one batch as plain state: what each user still needs and the blocks
/// won. No I/O: [`MongoStore::reserve_seqs`] feeds it what the server said.
#[derive(Debug, Default)]
pub(super) struct Reservation {
    /// Users without a block yet, each with the count it needs.
    pending: Vec<(UserId, u64)>,
    won: HashMap<UserId, Block>,
}

impl Reservation {
    /// `need`: each distinct user with its number of copies (> 0).
    pub fn new(need: Vec<(UserId, u64)>) -> Self {
        Self {
            won: HashMap::with_capacity(need.len()),
            pending: need,
        }
    }

    pub fn is_done(&self) -> bool {
        self.pending.is_empty()
    }

    /// Users still without a block, with what each needs.
    pub fn pending(&self) -> &[(UserId, u64)] {
        &self.pending
    }

    /// One step per pending user, from the counters just read (a user absent from `read`
    /// has no counter: from 0).
    pub fn steps(&self, read: &HashMap<String, Seq>) -> Vec<Step> {
        self.pending
            .iter()
            .map(|(user, n)| Step {
                user: user.clone(),
                from: read.get(user.as_str()).copied().unwrap_or(0),
                n: *n,
            })
            .collect()
    }

    /// The server's verdict on `steps` (from [`steps`](Self::steps) of this state): every
    /// step whose index is not in `lost` won its block; the others stay pending.
    pub fn settle(&mut self, steps: &[Step], lost: &[usize]) {
        let mut lost_flags = vec![false; steps.len()];
        for &i in lost {
            if let Some(f) = lost_flags.get_mut(i) {
                *f = true;
            }
        }
        for (step, lost) in steps.iter().zip(lost_flags) {
            if !lost {
                self.won.insert(step.user.clone(), (step.from + 1, step.n));
            }
        }
        let won = &self.won;
        self.pending.retain(|(user, _)| !won.contains_key(user));
    }

    /// `user`'s counter was incremented by its `n` to `last`.
    pub fn incremented(&mut self, user: &UserId, last: Seq) {
        if let Some(k) = self.pending.iter().position(|(u, _)| u == user) {
            let (user, n) = self.pending.swap_remove(k);
            self.won.insert(user, (last + 1 - n, n));
        }
    }

    /// The blocks, once [`is_done`](Self::is_done).
    pub fn into_blocks(self) -> HashMap<UserId, Block> {
        self.won
    }
}

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
        for round in 0..CAS_ROUNDS {
            if res.is_done() {
                break;
            }
            let read = self.read_counter_seqs(res.pending()).await?;
            let steps = res.steps(&read);
            if let Some(hook) = &self.after_counters {
                for step in &steps {
                    hook(step.user.clone()).await;
                }
            }
            let lost = self.compare_and_set(&steps).await?;
            if !lost.is_empty() {
                debug!(
                    round,
                    lost = lost.len(),
                    users = steps.len(),
                    "seq counters moved meanwhile"
                );
            }
            res.settle(&steps, &lost);
        }
        // Still contended: one increment each (owned users: a stream closure over borrowed
        // ones trips the `Send` check of the boxed `append` future, rust-lang/rust#102211).
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

    /// The seq of each of `users` that has a counter, in one query per [`CAS_CHUNK`] users.
    async fn read_counter_seqs(
        &self,
        users: &[(UserId, u64)],
    ) -> Result<HashMap<String, Seq>, MongoError> {
        const OP: &str = "read counters";
        let mut seqs = HashMap::with_capacity(users.len());
        for chunk in users.chunks(CAS_CHUNK) {
            let ids: Vec<&str> = chunk.iter().map(|(u, _)| u.as_str()).collect();
            let found: Vec<Document> = call(self.op_timeout, OP, || async {
                self.counters
                    .find(doc! {"_id": {"$in": &ids}})
                    .projection(doc! {"seq": 1})
                    // At most one document per id: with the limit reached the server closes the
                    // cursor in its first reply, so no `getMore` follows.
                    .limit(i64::try_from(ids.len()).unwrap_or(i64::MAX))
                    .batch_size(u32::try_from(ids.len()).unwrap_or(u32::MAX))
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
            for d in &found {
                let id = d
                    .get_str("_id")
                    .map_err(|_| MongoError::reply(OP, "counter without an id"))?;
                seqs.insert(id.to_string(), seq_field(d, "seq", OP)?);
            }
        }
        Ok(seqs)
    }

    /// Sends `steps` as unordered `update` commands of up to [`CAS_CHUNK`] statements;
    /// answers the indices (into `steps`) of those that lost.
    async fn compare_and_set(&self, steps: &[Step]) -> Result<Vec<usize>, MongoError> {
        let mut lost = Vec::new();
        for (k, chunk) in steps.chunks(CAS_CHUNK).enumerate() {
            let base = k * CAS_CHUNK;
            lost.extend(
                self.compare_and_set_chunk(chunk)
                    .await?
                    .into_iter()
                    .map(|i| base + i),
            );
        }
        Ok(lost)
    }

    async fn compare_and_set_chunk(&self, steps: &[Step]) -> Result<Vec<usize>, MongoError> {
        const OP: &str = "reserve seqs";
        // Stamped before the reservation, and so no earlier than this append's start: a
        // reader takes the counter as final one budget after the latest stamp (`read.rs`).
        let at = to_i64(now_ms());
        let updates: Vec<Document> = steps
            .iter()
            .map(|s| {
                doc! {
                    "q": {"_id": s.user.as_str(), "seq": to_i64(s.from)},
                    "u": {"$set": {"seq": to_i64(s.from + s.n)}, "$max": {"at": at}},
                    "upsert": true,
                }
            })
            .collect();
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
        duplicate_statements(OP, &reply)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn read(counters: &[(&str, Seq)]) -> HashMap<String, Seq> {
        counters.iter().map(|(u, s)| (u.to_string(), *s)).collect()
    }

    fn reservation(need: &[(&str, u64)]) -> Reservation {
        Reservation::new(need.iter().map(|(u, n)| (user(u), *n)).collect())
    }

    #[test]
    fn each_user_moves_from_the_counter_read_and_one_without_a_counter_from_zero() {
        let res = reservation(&[("a", 3), ("b", 1)]);
        let mut steps = res.steps(&read(&[("a", 7)]));
        steps.sort_by(|x, y| x.user.cmp(&y.user));
        assert_eq!(
            steps,
            [
                Step {
                    user: user("a"),
                    from: 7,
                    n: 3
                },
                Step {
                    user: user("b"),
                    from: 0,
                    n: 1
                },
            ]
        );
    }

    #[test]
    fn a_won_step_is_the_block_right_after_the_value_read() {
        let mut res = reservation(&[("a", 3), ("b", 1)]);
        let steps = res.steps(&read(&[("a", 7)]));
        res.settle(&steps, &[]);
        assert!(res.is_done());
        let blocks = res.into_blocks();
        assert_eq!(blocks[&user("a")], (8, 3));
        assert_eq!(blocks[&user("b")], (1, 1));
    }

    #[test]
    fn a_lost_step_stays_pending_and_the_next_round_starts_from_the_counter_read_again() {
        let mut res = reservation(&[("a", 2), ("b", 1)]);
        let steps = res.steps(&read(&[("a", 5), ("b", 5)]));
        let a = steps.iter().position(|s| s.user == user("a")).unwrap();
        res.settle(&steps, &[a]);
        assert_eq!(res.pending(), [(user("a"), 2)]);
        // Another writer took 6..=9 meanwhile.
        let steps = res.steps(&read(&[("a", 9)]));
        assert_eq!(
            steps,
            [Step {
                user: user("a"),
                from: 9,
                n: 2
            }]
        );
        res.settle(&steps, &[]);
        let blocks = res.into_blocks();
        assert_eq!(blocks[&user("a")], (10, 2));
        assert_eq!(blocks[&user("b")], (6, 1));
    }

    #[test]
    fn an_increment_gives_the_block_ending_at_the_new_counter_value() {
        let mut res = reservation(&[("a", 4)]);
        res.incremented(&user("a"), 20);
        assert!(res.is_done());
        assert_eq!(res.into_blocks()[&user("a")], (17, 4));
    }

    #[test]
    fn a_lost_index_out_of_range_is_ignored() {
        let mut res = reservation(&[("a", 1)]);
        let steps = res.steps(&read(&[]));
        res.settle(&steps, &[5]);
        assert!(res.is_done());
    }
}
