//! Idempotency claims: step 1 (claim or learn a key's fate) and step 4 (mark done) of the
//! write path described in `append.rs`.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::Arc;

use futures_util::TryStreamExt;
use mongodb::bson::{doc, DateTime, Document};
use mongodb::options::{Acknowledgment, WriteConcern};
use tracing::warn;

use super::append::{Fate, Item};
use super::error::{duplicate_indices, MongoError};
use super::{call, seq_field, to_i64, AsRawOrDoc, MongoStore};
use crate::store::{NewMessage, Target};

/// Rounds of claim / look up / delete-expired before a key counts as contended.
const CLAIM_ROUNDS: usize = 3;

impl MongoStore {
    /// Step 1: claims every key of the batch, or learns what became of it.
    pub(super) async fn claim_keys(
        &self,
        batch: &[NewMessage],
        items: &mut [Item],
        now: u64,
    ) -> Result<(), MongoError> {
        let mut todo: Vec<usize> = (0..items.len())
            .filter(|&i| batch[i].idempotency_key.is_some())
            .filter(|&i| matches!(items[i].fate, Fate::Store { .. }))
            .collect();
        for _round in 0..CLAIM_ROUNDS {
            if todo.is_empty() {
                return Ok(());
            }
            let taken = self.insert_claims(batch, items, &todo, now).await?;
            todo = self.learn_fates(batch, items, &taken, now).await?;
        }
        match todo.first() {
            None => Ok(()),
            Some(&i) => Err(MongoError::ClaimContended {
                key: key(batch, i).to_string(),
            }),
        }
    }

    /// Inserts a pending claim for each item of `todo`; marks the ones won and returns the
    /// items whose key someone else already holds.
    async fn insert_claims(
        &self,
        batch: &[NewMessage],
        items: &mut [Item],
        todo: &[usize],
        now: u64,
    ) -> Result<Vec<usize>, MongoError> {
        let expires = DateTime::from_millis(to_i64(now.saturating_add(self.idempotency_window_ms)));
        let docs: Vec<Document> = todo
            .iter()
            .map(|&i| {
                let recipients = match &batch[i].target {
                    Target::Users(users) => users.len(),
                    Target::Broadcast => 0,
                };
                doc! {
                    "_id": key(batch, i),
                    "id": &*items[i].id,
                    "ts": to_i64(items[i].ts),
                    "recipients": to_i64(recipients as u64),
                    "state": "pending",
                    "expires_at": expires,
                }
            })
            .collect();
        let taken = call(self.op_timeout, "claim idempotency keys", || async {
            match self.claims.insert_many(&docs).ordered(false).await {
                Ok(_) => Ok(Vec::new()),
                Err(e) => duplicate_indices(&e).ok_or(e),
            }
        })
        .await?;
        let mut won = vec![true; todo.len()];
        for &k in &taken {
            won[k] = false;
        }
        for (&i, _) in todo.iter().zip(&won).filter(|(_, &won)| won) {
            items[i].fate = Fate::Store {
                claimed: true,
                completing: false,
            };
        }
        Ok(taken.into_iter().map(|k| todo[k]).collect())
    }

    /// Reads the claims that `taken` lost to and sets each item's fate from them; returns
    /// the items to claim again (their claim was gone or past its window).
    async fn learn_fates(
        &self,
        batch: &[NewMessage],
        items: &mut [Item],
        taken: &[usize],
        now: u64,
    ) -> Result<Vec<usize>, MongoError> {
        let mut retry = Vec::new();
        if taken.is_empty() {
            return Ok(retry);
        }
        let keys: Vec<&str> = taken.iter().map(|&i| key(batch, i)).collect();
        let found: Vec<Document> = call(self.op_timeout, "read idempotency claims", || async {
            self.claims
                .find(doc! {"_id": {"$in": &keys}})
                .await?
                .try_collect()
                .await
        })
        .await?;
        let found: HashMap<&str, &Document> = found
            .iter()
            .filter_map(|d| Some((d.get_str("_id").ok()?, d)))
            .collect();
        for &i in taken {
            let Some(claim) = found.get(key(batch, i)) else {
                // Removed since (its window ended): claim it again.
                retry.push(i);
                continue;
            };
            let op = "read idempotency claims";
            let first_id = claim
                .get_str("id")
                .map_err(|_| MongoError::reply(op, "claim without an id"))?;
            let claim_expires = claim
                .get_datetime("expires_at")
                .map_err(|_| MongoError::reply(op, "claim without expires_at"))?;
            if first_id == &*items[i].id {
                // Our own claim, written by an attempt whose reply was lost.
                items[i].fate = Fate::Store {
                    claimed: true,
                    completing: false,
                };
            } else if claim_expires.timestamp_millis() <= to_i64(now) {
                // Past its window but not yet removed by the TTL monitor.
                call(self.op_timeout, "delete expired claim", || {
                    self.claims
                        .delete_one(doc! {"_id": key(batch, i), "id": first_id})
                        .into_future()
                })
                .await?;
                retry.push(i);
            } else if claim.get_str("state") == Ok("done") {
                items[i].id = Arc::from(first_id);
                items[i].fate = Fate::Duplicate {
                    recipients: claim.number("recipients").unwrap_or(0).max(0) as usize,
                };
            } else {
                items[i].id = Arc::from(first_id);
                items[i].ts = seq_field(*claim, "ts", op)?;
                items[i].fate = Fate::Store {
                    claimed: true,
                    completing: true,
                };
            }
        }
        Ok(retry)
    }

    /// Step 4: marks this append's claims done; failures only delay that to a retry.
    pub(super) async fn finalize_claims(&self, batch: &[NewMessage], items: &[Item]) {
        let keys: Vec<&str> = batch
            .iter()
            .zip(items)
            .filter(|(_, item)| matches!(item.fate, Fate::Store { claimed: true, .. }))
            .filter_map(|(msg, _)| msg.idempotency_key.as_deref())
            .collect();
        if keys.is_empty() {
            return;
        }
        let res = call(self.op_timeout, "finalize idempotency claims", || {
            self.claims
                .update_many(
                    doc! {"_id": {"$in": &keys}, "state": "pending"},
                    doc! {"$set": {"state": "done"}},
                )
                // Acknowledged by the primary is enough: a claim that stays pending (even
                // one rolled back in a failover) only makes a retry re-check its copies.
                .write_concern(WriteConcern::builder().w(Acknowledgment::Nodes(1)).build())
                .into_future()
        })
        .await;
        if let Err(err) = res {
            warn!(error = %err, keys = keys.len(), "idempotency claims stay pending; the messages are stored");
        }
    }
}

/// The idempotency key of message `i` (only asked of messages that have one).
fn key(batch: &[NewMessage], i: usize) -> &str {
    batch[i].idempotency_key.as_deref().unwrap_or_default()
}
