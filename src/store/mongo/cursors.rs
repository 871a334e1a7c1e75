//! Ack cursors: one small document per device, moved forward only, saved in bulk.

use std::collections::HashMap;
use std::future::IntoFuture;

use mongodb::bson::{doc, Document};

use super::error::{MongoError, DUPLICATE_KEY};
use super::{call, check_write_reply, seq_field, to_i64, MongoStore};
use crate::ids::{DeviceId, Seq, UserId};
use crate::store::CursorUpdate;

/// Most cursor upserts in one `update` command (far below the server's 100 000 and 16 MiB).
const CURSOR_BATCH: usize = 10_000;

/// `_id` of a device's cursor; `/` cannot occur in either id.
fn cursor_key(user: &UserId, device: &DeviceId) -> String {
    format!("{user}/{device}")
}

impl MongoStore {
    pub(super) async fn load_cursor(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<Option<Seq>, MongoError> {
        let found = call(self.op_timeout, "read cursor", || {
            self.cursors
                .find_one(doc! {"_id": cursor_key(user, device)})
                .projection(doc! {"seq": 1})
                .into_future()
        })
        .await?;
        found
            .map(|d| seq_field(&d, "seq", "read cursor"))
            .transpose()
    }

    /// Saves a batch in one `update` command per [`CURSOR_BATCH`] devices: the driver's
    /// `Client::bulk_write` needs MongoDB 8, the multi-statement `update` command works on
    /// every version.
    pub(super) async fn store_cursors(&self, updates: &[CursorUpdate]) -> Result<(), MongoError> {
        // One statement per device: the highest position of the batch.
        let mut newest: HashMap<(&UserId, &DeviceId), Seq> = HashMap::with_capacity(updates.len());
        for u in updates {
            let e = newest.entry((&u.user, &u.device)).or_insert(u.seq);
            *e = (*e).max(u.seq);
        }
        let all: Vec<((&UserId, &DeviceId), Seq)> = newest.into_iter().collect();
        for chunk in all.chunks(CURSOR_BATCH) {
            self.store_cursor_chunk(chunk).await?;
        }
        Ok(())
    }

    /// `$max` keeps each cursor from moving back. A racing upsert of a new cursor can fail
    /// with a duplicate key; the whole (idempotent) command is then sent once more.
    async fn store_cursor_chunk(
        &self,
        chunk: &[((&UserId, &DeviceId), Seq)],
    ) -> Result<(), MongoError> {
        let updates: Vec<Document> = chunk
            .iter()
            .map(|((user, device), seq)| {
                doc! {
                    "q": {"_id": cursor_key(user, device)},
                    "u": {
                        "$max": {"seq": to_i64(*seq)},
                        "$setOnInsert": {"user": user.as_str(), "device": device.as_str()},
                    },
                    "upsert": true,
                }
            })
            .collect();
        let cmd = doc! {
            "update": self.cursors.name(),
            "updates": updates,
            "ordered": false,
            "writeConcern": self.write_concern.clone(),
        };
        let mut tries = 0;
        loop {
            tries += 1;
            let reply = call(self.op_timeout, "save cursors", || {
                self.db.run_command(cmd.clone()).into_future()
            })
            .await?;
            match check_write_reply("save cursors", &reply) {
                Err(MongoError::Write { code, .. }) if code == DUPLICATE_KEY && tries < 2 => {}
                other => return other,
            }
        }
    }
}
