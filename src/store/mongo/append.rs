//! The write path: [`MongoStore::append`](super::MongoStore) for many nodes at once.
//!
//! One batch costs, in order:
//! 1. **Claims** (only for messages with an idempotency key): one `insert_many` of
//!    `idempotency` documents `{_id: key, id, ts, state: "pending"}`. A key already there
//!    decides the message: `done` → answered as a duplicate with the first id; `pending`
//!    (the first append failed after claiming, or still runs) → this append *completes* it
//!    under the first id and ts; past its window → deleted and claimed again.
//! 2. **Seqs** (`seqs.rs`): a block of `n` seqs per distinct user, in batch order, for all
//!    of the batch's users in two round trips: one `update` whose multi-document
//!    statements move every counter by its `n` and log the block's last seq under this
//!    round's random tag in the same atomic document update, then one `find` reading the
//!    tagged entries back. A user's first message creates its counter (an `insert`). A
//!    completion first reads which copies the earlier append stored; only the missing ones
//!    get seqs.
//! 3. **Messages** (`copies.rs`): one `insert_many` (unordered) of every user copy of the
//!    batch, plus one of its broadcast markers. A copy's `_id` is `"<message id>:<user>"`, so storing a message a
//!    second time (a retried call, or a completion racing the first append) hits a
//!    duplicate key instead of a second copy: the stored copy is read back and its seq and
//!    frame are the ones delivered, and the seq reserved for the repeat stays a gap. A
//!    duplicate on the `user_seq` index instead means the counter was behind the stored
//!    messages: it is moved past them and the append fails, so a retry succeeds.
//! 4. **Finalize**: one `update_many` (write concern 1) marks this append's claims `done`.
//!    Only logged on failure: the messages are durable, and a retry then completes the
//!    still-pending claim, which re-stores nothing.
//!
//! Steps 2-4 take turns with the other appends of the store (`turns.rs`): one reserves at
//! a time, in the order they came, and they answer in that order, so a batch's insert runs
//! while the next batch reserves and the node still hands out each user's seqs in order.
//!
//! So a key is answered as a duplicate only once its message was stored; a 503 never
//! leaves a key that blocks its retry; and a retry after an ambiguous failure (a timeout
//! after the server wrote) finds its copies instead of storing new ones. A completion
//! answers `duplicate: false` with every copy to deliver again: sessions drop seqs they
//! already have. It uses the retry's recipients, topic and payload: a retried request must
//! repeat its body. The answer waits for the write concern of steps 1-3.

use std::collections::HashMap;
use std::sync::Arc;

use super::error::MongoError;
use super::reservation::Block;
use super::{seq_field, MongoStore};
use crate::clock::now_ms;
use crate::frames::Frame;
use crate::ids::{Seq, UserId};
use crate::store::{new_message_id, Accepted, Delivery, NewMessage, Target};
use bytestring::ByteString;

/// What becomes of one message of the batch.
pub(super) enum Fate {
    /// Store it. `claimed`: it holds a claim to mark done; `completing`: the claim was
    /// an earlier append's, whose id and ts this one reuses.
    Store { claimed: bool, completing: bool },
    /// Its key's first message is stored: answer with that.
    Duplicate { recipients: usize },
    /// Its key already appeared earlier in this batch, at this index.
    SameBatch(usize),
}

pub(super) struct Item {
    pub(super) id: Arc<str>,
    /// The frame's `ts`: when the (first) append began.
    pub(super) ts: u64,
    pub(super) fate: Fate,
    /// Copies an earlier append of this message already stored (completions only).
    pub(super) stored: HashMap<UserId, (Seq, Frame)>,
    pub(super) deliveries: Vec<Delivery>,
    pub(super) broadcast: Option<ByteString>,
}

impl MongoStore {
    pub(super) async fn append_batch(
        &self,
        batch: Vec<NewMessage>,
    ) -> Result<Vec<Accepted>, MongoError> {
        let now = now_ms();
        let mut first_of_key: HashMap<&str, usize> = HashMap::new();
        let mut items: Vec<Item> = Vec::with_capacity(batch.len());
        for (i, msg) in batch.iter().enumerate() {
            let fate = match msg.idempotency_key.as_deref() {
                Some(key) => match first_of_key.get(key) {
                    Some(&j) => Fate::SameBatch(j),
                    None => {
                        first_of_key.insert(key, i);
                        Fate::Store {
                            claimed: false,
                            completing: false,
                        }
                    }
                },
                None => Fate::Store {
                    claimed: false,
                    completing: false,
                },
            };
            items.push(Item {
                id: new_message_id(),
                ts: now,
                fate,
                stored: HashMap::new(),
                deliveries: Vec::new(),
                broadcast: None,
            });
        }

        self.claim_keys(&batch, &mut items, now).await?;
        self.load_stored_copies(&batch, &mut items).await?;
        // Reserve in turn, store alongside the next append's reservation, answer in turn
        // (`turns.rs`): a failure answers in its turn too.
        let (reserving, turn) = self.turns.reserve().await;
        let blocks = self.reserve_seqs(&batch, &items).await;
        drop(reserving);
        let stored = match blocks {
            Ok(blocks) => self.store_batch(&batch, &mut items, blocks).await,
            Err(e) => Err(e),
        };
        turn.answer(stored).await?;
        Ok(answers(items, &batch))
    }

    /// Steps 3 and 4, and the retention bookkeeping of the blocks stored.
    async fn store_batch(
        &self,
        batch: &[NewMessage],
        items: &mut [Item],
        blocks: HashMap<UserId, Block>,
    ) -> Result<(), MongoError> {
        self.store_messages(batch, items, &blocks).await?;
        self.finalize_claims(batch, items).await;
        for (user, (first, n)) in &blocks {
            self.trimmer.note(user, *first, first + n - 1);
        }
        self.trimmer.kick();
        Ok(())
    }

    /// For messages completing an earlier append: the copies it stored already keep their
    /// seq and frame, so they get no new seq (which would stay a gap).
    async fn load_stored_copies(
        &self,
        batch: &[NewMessage],
        items: &mut [Item],
    ) -> Result<(), MongoError> {
        let mut owner: HashMap<String, (usize, &UserId)> = HashMap::new();
        for (i, (msg, item)) in batch.iter().zip(items.iter()).enumerate() {
            if let (
                Fate::Store {
                    completing: true, ..
                },
                Target::Users(users),
            ) = (&item.fate, &msg.target)
            {
                for user in users {
                    owner.insert(copy_id(&item.id, user), (i, user));
                }
            }
        }
        if owner.is_empty() {
            return Ok(());
        }
        let op = "read stored copies";
        let ids: Vec<&str> = owner.keys().map(String::as_str).collect();
        let found = self.find_copies(&ids).await?;
        for d in &found {
            let (Ok(id), Ok(frame)) = (d.get_str("_id"), d.get_str("frame")) else {
                return Err(MongoError::reply(op, "copy without _id or frame"));
            };
            if let Some(&(i, user)) = owner.get(id) {
                let seq = seq_field(d, "seq", op)?;
                items[i]
                    .stored
                    .insert(user.clone(), (seq, Frame::from(frame.to_string())));
            }
        }
        Ok(())
    }
}

/// `_id` of a message's copy for `user`; a message id is a UUID, so no two pairs collide.
pub(super) fn copy_id(id: &str, user: &UserId) -> String {
    format!("{id}:{user}")
}

/// The answer to each message of `batch`, in order, once its `items` are settled.
fn answers(items: Vec<Item>, batch: &[NewMessage]) -> Vec<Accepted> {
    let mut out: Vec<Accepted> = Vec::with_capacity(items.len());
    for (item, msg) in items.into_iter().zip(batch) {
        let accepted = match item.fate {
            Fate::Store { .. } => Accepted {
                id: item.id,
                recipients: match &msg.target {
                    Target::Users(users) => users.len(),
                    Target::Broadcast => 0,
                },
                duplicate: false,
                deliveries: item.deliveries,
                broadcast: item.broadcast,
            },
            Fate::Duplicate { recipients } => duplicate(item.id, recipients),
            Fate::SameBatch(j) => duplicate(out[j].id.clone(), out[j].recipients),
        };
        out.push(accepted);
    }
    out
}

fn duplicate(id: Arc<str>, recipients: usize) -> Accepted {
    Accepted {
        id,
        recipients,
        duplicate: true,
        deliveries: Vec::new(),
        broadcast: None,
    }
}
