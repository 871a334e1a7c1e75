//! Ack cursors: one small document per device, moved forward only, saved in bulk; read
//! one at a time (resume) or all of some users' devices at once (delivery status).

use std::collections::HashMap;
use std::future::IntoFuture;

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Document};

use super::error::{MongoError, DUPLICATE_KEY};
use super::{call, check_write_reply, seq_field, to_i64, MongoStore};
use crate::ids::{DeviceId, Seq, UserId};
use crate::store::{CursorUpdate, DeviceCursor};

/// Most cursor upserts in one `update` command (far below the server's 100 000 and 16 MiB).
const CURSOR_BATCH: usize = 10_000;

/// Most users whose cursors one query asks for (one `_id` range each).
const CURSOR_READ_USERS: usize = 500;

/// `_id` of a device's cursor; `/` cannot occur in either id.
fn cursor_key(user: &UserId, device: &DeviceId) -> String {
    format!("{user}/{device}")
}

/// The `_id`s of every cursor of `user`: those starting `<user>/`, i.e. in
/// [`<user>/`, `<user>0`) (`0` follows `/` in ASCII), a range the `_id` index serves, so
/// the collection needs no index on `user`.
fn user_range(user: &UserId) -> Document {
    doc! {"_id": {"$gte": format!("{user}/"), "$lt": format!("{user}0")}}
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

    /// The cursors of every device of `users`, one query per [`CURSOR_READ_USERS`] users.
    pub(super) async fn load_device_cursors(
        &self,
        users: &[UserId],
    ) -> Result<Vec<DeviceCursor>, MongoError> {
        const OP: &str = "read device cursors";
        let mut out = Vec::new();
        for chunk in users.chunks(CURSOR_READ_USERS) {
            let ranges: Vec<Document> = chunk.iter().map(user_range).collect();
            let filter = doc! {"$or": ranges};
            let docs: Vec<Document> = call(self.op_timeout, OP, || async {
                self.cursors
                    .find(filter.clone())
                    .projection(doc! {"seq": 1})
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
            for d in &docs {
                let (user, device) = d
                    .get_str("_id")
                    .ok()
                    .and_then(|id| id.split_once('/'))
                    .and_then(|(u, d)| Some((UserId::parse(u).ok()?, DeviceId::parse(d).ok()?)))
                    .ok_or_else(|| MongoError::reply(OP, "cursor `_id` is not <user>/<device>"))?;
                out.push(DeviceCursor {
                    user,
                    device,
                    acked_seq: seq_field(d, "seq", OP)?,
                });
            }
        }
        Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_range_holds_exactly_that_users_cursor_ids() {
        let al = UserId::parse("al").unwrap();
        let range = user_range(&al);
        let r = range.get_document("_id").unwrap();
        let (lo, hi) = (r.get_str("$gte").unwrap(), r.get_str("$lt").unwrap());
        let inside = |id: &str| lo <= id && id < hi;
        let key =
            |u: &str, d: &str| cursor_key(&UserId::parse(u).unwrap(), &DeviceId::parse(d).unwrap());
        assert!(inside(&key("al", "phone")));
        assert!(inside(&key("al", "-")));
        assert!(inside(&key("al", "zzz")));
        for (u, d) in [
            ("al.x", "p"),
            ("al-", "p"),
            ("al0", "p"),
            ("al:x", "p"),
            ("alice", "p"),
        ] {
            assert!(!inside(&key(u, d)), "{u}/{d}");
        }
    }
}
