//! Step 3 of the write path (see `append.rs`): every user copy and broadcast marker of a
//! batch in one unordered insert each, adopting copies an earlier attempt already stored,
//! and repairing a counter found behind its stored messages.

use std::collections::HashMap;
use std::future::IntoFuture;

use futures_util::TryStreamExt;
use mongodb::bson::{doc, rawdoc, DateTime, RawDocumentBuf};
use tracing::error;

use super::append::{copy_id, Fate, Item};
use super::error::{duplicate_indices, MongoError};
use super::{call, seq_field, to_i64, MongoStore};
use crate::clock::now_ms;
use crate::frames::{Frame, MessageParts};
use crate::ids::{Seq, UserId};
use crate::store::{Delivery, NewMessage, Target};

/// The documents of one batch's step 3.
struct Documents {
    copies: Vec<RawDocumentBuf>,
    /// For each copy: (item, delivery) it belongs to.
    copy_of: Vec<(usize, usize)>,
    casts: Vec<RawDocumentBuf>,
    /// For each broadcast marker (keyed broadcasts only): its item.
    cast_of: Vec<usize>,
}

impl MongoStore {
    /// Builds every frame once and the documents of step 3: user copies (each with the
    /// (item, delivery) it belongs to) and broadcast markers (each with its item).
    fn build_documents(
        batch: &[NewMessage],
        items: &mut [Item],
        blocks: &HashMap<UserId, (Seq, u64)>,
        marker_expires: DateTime,
    ) -> Result<Documents, MongoError> {
        let mut next: HashMap<&UserId, Seq> = blocks.iter().map(|(u, b)| (u, b.0)).collect();
        // Stamped after the seqs were reserved: a reader takes a seq missing before this copy
        // as possibly still on its way until one append budget after it (see `read.rs`).
        let at = to_i64(now_ms());
        let mut copies: Vec<RawDocumentBuf> = Vec::new();
        // For each copy: (item, delivery) it belongs to.
        let mut copy_of: Vec<(usize, usize)> = Vec::new();
        let mut casts: Vec<RawDocumentBuf> = Vec::new();
        let mut cast_of: Vec<usize> = Vec::new();
        for (i, (msg, item)) in batch.iter().zip(items.iter_mut()).enumerate() {
            if !matches!(item.fate, Fate::Store { .. }) {
                continue;
            }
            let parts = MessageParts::new(
                &item.id,
                msg.topic.as_deref(),
                msg.payload.get(),
                item.ts,
                msg.arrived_us,
            );
            let expires = DateTime::from_millis(to_i64(
                item.ts.saturating_add(msg.ttl_s.saturating_mul(1000)),
            ));
            match &msg.target {
                Target::Broadcast => {
                    // Only a keyed broadcast can be retried: its marker lives as long as
                    // its claim, the window in which a retry may complete this append.
                    if msg.idempotency_key.is_some() {
                        casts.push(rawdoc! {"_id": &*item.id, "expires_at": marker_expires});
                        cast_of.push(i);
                    }
                    item.broadcast = Some(parts.broadcast_frame());
                }
                Target::Users(users) => {
                    item.deliveries.reserve(users.len());
                    for user in users {
                        if let Some((seq, frame)) = item.stored.get(user) {
                            item.deliveries.push(Delivery {
                                user: user.clone(),
                                seq: *seq,
                                frame: frame.clone(),
                            });
                            continue;
                        }
                        // Every other recipient got a block in step 2.
                        let Some(seq) = next.get_mut(user) else {
                            return Err(MongoError::reply(
                                "reserve seqs",
                                "no seq block for a recipient",
                            ));
                        };
                        let frame = parts.frame(*seq);
                        copies.push(rawdoc! {
                            "_id": copy_id(&item.id, user),
                            "user": user.as_str(),
                            "seq": to_i64(*seq),
                            "frame": &*frame.to_text(),
                            "expires_at": expires,
                            "at": at,
                        });
                        copy_of.push((i, item.deliveries.len()));
                        item.deliveries.push(Delivery {
                            user: user.clone(),
                            seq: *seq,
                            frame,
                        });
                        *seq += 1;
                    }
                }
            }
        }
        Ok(Documents {
            copies,
            copy_of,
            casts,
            cast_of,
        })
    }

    /// Step 3: stores every copy and broadcast marker of the batch.
    pub(super) async fn store_messages(
        &self,
        batch: &[NewMessage],
        items: &mut [Item],
        blocks: &HashMap<UserId, (Seq, u64)>,
    ) -> Result<(), MongoError> {
        let Documents {
            copies,
            copy_of,
            casts,
            cast_of,
        } = Self::build_documents(batch, items, blocks, self.marker_expiry())?;
        let (dup_copies, dup_casts) = tokio::try_join!(
            self.insert_unordered(&self.messages, &copies, "insert messages"),
            self.insert_unordered(&self.broadcasts, &casts, "insert broadcasts"),
        )?;

        // A broadcast already stored by the append this one completes may have been pushed:
        // broadcasts carry no seq to deduplicate, so it is not pushed again.
        for k in dup_casts {
            let item = &mut items[cast_of[k]];
            if matches!(
                item.fate,
                Fate::Store {
                    completing: true,
                    ..
                }
            ) {
                item.broadcast = None;
            }
        }
        if !dup_copies.is_empty() {
            self.adopt_stored_copies(&copies, &copy_of, &dup_copies, items)
                .await?;
        }
        Ok(())
    }

    /// The stored copies with these `_id`s (their seq and frame), in one query.
    pub(super) async fn find_copies(
        &self,
        ids: &[&str],
    ) -> Result<Vec<RawDocumentBuf>, MongoError> {
        call(self.op_timeout, "read stored copies", || async {
            self.messages
                .find(doc! {"_id": {"$in": ids}})
                .projection(doc! {"seq": 1, "frame": 1})
                .await?
                .try_collect()
                .await
        })
        .await
    }

    /// When a broadcast marker written now may go: with the claims written in step 1.
    fn marker_expiry(&self) -> DateTime {
        DateTime::from_millis(to_i64(now_ms().saturating_add(self.idempotency_window_ms)))
    }

    /// Inserts `docs` unordered in one round trip; answers the indices refused as
    /// duplicate keys (copies already stored by an earlier attempt), nothing when empty.
    async fn insert_unordered(
        &self,
        collection: &mongodb::Collection<RawDocumentBuf>,
        docs: &[RawDocumentBuf],
        op: &'static str,
    ) -> Result<Vec<usize>, MongoError> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        call(self.op_timeout, op, || async {
            match collection.insert_many(docs).ordered(false).await {
                Ok(_) => Ok(Vec::new()),
                Err(e) => duplicate_indices(&e).ok_or(e),
            }
        })
        .await
    }

    /// Copies refused as duplicates: deliver the stored copy where this message is already
    /// stored; otherwise the (user, seq) belongs to another message and the counter is behind.
    async fn adopt_stored_copies(
        &self,
        copies: &[RawDocumentBuf],
        copy_of: &[(usize, usize)],
        dups: &[usize],
        items: &mut [Item],
    ) -> Result<(), MongoError> {
        let op = "read stored copies";
        let ids: Vec<&str> = dups
            .iter()
            .filter_map(|&k| copies[k].get_str("_id").ok())
            .collect();
        let stored = self.find_copies(&ids).await?;
        let mut by_id: HashMap<&str, (Seq, &str)> = HashMap::with_capacity(stored.len());
        for d in &stored {
            let (Ok(id), Ok(frame)) = (d.get_str("_id"), d.get_str("frame")) else {
                return Err(MongoError::reply(op, "copy without _id or frame"));
            };
            by_id.insert(id, (seq_field(d, "seq", op)?, frame));
        }
        for &k in dups {
            let (i, j) = copy_of[k];
            let id = copies[k].get_str("_id").unwrap_or_default();
            match by_id.get(id) {
                Some((seq, frame)) => {
                    let d = &mut items[i].deliveries[j];
                    d.seq = *seq;
                    d.frame = Frame::from(frame.to_string());
                }
                None => {
                    let user = items[i].deliveries[j].user.clone();
                    self.repair_counter(&user).await;
                    return Err(MongoError::SeqConflict {
                        user: user.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Moves `user`'s counter past its newest stored message; best effort, logged.
    async fn repair_counter(&self, user: &UserId) {
        match self.counter_to_newest_copy(user).await {
            Ok(Some(seq)) => {
                error!(%user, seq, "seq counter was behind its stored messages; moved forward")
            }
            Ok(None) => {}
            Err(err) => error!(%user, error = %err, "seq counter repair failed"),
        }
    }

    async fn counter_to_newest_copy(&self, user: &UserId) -> Result<Option<Seq>, MongoError> {
        let op = "repair counter";
        let newest = call(self.op_timeout, op, || {
            self.messages
                .find_one(doc! {"user": user.as_str()})
                .sort(doc! {"seq": -1})
                .projection(doc! {"seq": 1})
                .into_future()
        })
        .await?;
        let Some(newest) = newest else {
            return Ok(None);
        };
        let seq = seq_field(&newest, "seq", op)?;
        call(self.op_timeout, op, || {
            self.counters
                .update_one(
                    doc! {"_id": user.as_str()},
                    doc! {"$max": {"seq": to_i64(seq)}},
                )
                .upsert(true)
                .into_future()
        })
        .await?;
        Ok(Some(seq))
    }
}
