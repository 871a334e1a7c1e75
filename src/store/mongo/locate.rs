//! Finding one message's copies by its id, for its delivery status: one range query on
//! `_id` (a copy's `_id` is `"<id>:<user>"`, so a message's copies are the `_id`s from
//! `"<id>:"` up to `"<id>;"`: `;` follows `:` in byte order and a UUID holds neither), then the recipients' counters, against which each copy is judged still stored
//! (unexpired and above its user's retention floor, exactly what a read would return) or
//! not. Copies the TTL monitor or the trimmer already deleted are simply not found.

use futures_util::TryStreamExt;
use mongodb::bson::{doc, RawDocumentBuf};

use super::error::MongoError;
use super::{call, seq_field, MongoStore};
use crate::clock::now_ms;
use crate::ids::{MessageId, Seq, UserId};
use crate::store::MessageCopy;

const OP: &str = "locate message";

/// A copy as found: its user, seq and expiry (unix ms).
struct Found {
    user: UserId,
    seq: Seq,
    expires_ms: i64,
}

impl MongoStore {
    /// Every copy of `id` still in the collection, each judged stored or not.
    pub(super) async fn find_copies_of(
        &self,
        id: &MessageId,
    ) -> Result<Vec<MessageCopy>, MongoError> {
        // Judged against the instant the lookup starts, as a read judges expiry.
        let started = now_ms();
        let filter = copies_of(id.as_str());
        let docs: Vec<RawDocumentBuf> = call(self.op_timeout, OP, || async {
            self.messages
                .find(filter.clone())
                .projection(doc! {"_id": 0, "user": 1, "seq": 1, "expires_at": 1})
                .await?
                .try_collect()
                .await
        })
        .await?;
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let found = docs.iter().map(parse).collect::<Result<Vec<_>, _>>()?;
        let users: Vec<UserId> = found.iter().map(|f| f.user.clone()).collect();
        let last_seqs = self.load_counters(&users).await?;
        Ok(judge(found, &last_seqs, self.max_per_user, started))
    }
}

/// The `_id` range holding every copy of message `id`, and nothing else.
fn copies_of(id: &str) -> mongodb::bson::Document {
    doc! {"_id": {"$gte": format!("{id}:"), "$lt": format!("{id};")}}
}

fn parse(d: &RawDocumentBuf) -> Result<Found, MongoError> {
    let user = d
        .get_str("user")
        .ok()
        .and_then(|u| UserId::parse(u).ok())
        .ok_or_else(|| MongoError::reply(OP, "copy without a valid user"))?;
    let expires_ms = d
        .get_datetime("expires_at")
        .map_err(|_| MongoError::reply(OP, "copy without expires_at"))?
        .timestamp_millis();
    Ok(Found {
        user,
        seq: seq_field(d, "seq", OP)?,
        expires_ms,
    })
}

/// Each found copy with whether a read at `now` would still return it: unexpired, and
/// above the retention floor of its user's newest seq (`last_seqs`, in `found`'s order).
fn judge(found: Vec<Found>, last_seqs: &[Seq], max_per_user: u64, now: u64) -> Vec<MessageCopy> {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    found
        .into_iter()
        .zip(last_seqs)
        .map(|(f, last)| MessageCopy {
            stored: f.expires_ms > now && f.seq > last.saturating_sub(max_per_user),
            user: f.user,
            seq: f.seq,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;

    fn found(user: &str, seq: Seq, expires_ms: i64) -> Found {
        Found {
            user: UserId::parse(user).unwrap(),
            seq,
            expires_ms,
        }
    }

    fn stored(found: Vec<Found>, last_seqs: &[Seq]) -> Vec<bool> {
        judge(found, last_seqs, 10, NOW)
            .iter()
            .map(|c| c.stored)
            .collect()
    }

    #[test]
    fn the_id_range_of_a_message_holds_its_copies_and_no_other_message() {
        let id = "0192f4c8-0000-7000-8000-000000000001";
        let other = "0192f4c8-0000-7000-8000-000000000002";
        let range = copies_of(id);
        let r = range.get_document("_id").unwrap();
        let (lo, hi) = (r.get_str("$gte").unwrap(), r.get_str("$lt").unwrap());
        let within = |s: &str| lo <= s && s < hi;
        for user in ["a", "zz", "~", "user-9000"] {
            assert!(within(&format!("{id}:{user}")), "{user}");
            assert!(!within(&format!("{other}:{user}")), "{user}");
        }
        assert!(!within(id), "the bare id is no copy");
    }

    #[test]
    fn an_unexpired_copy_within_retention_is_stored() {
        assert_eq!(stored(vec![found("a", 5, 2_000_000)], &[12]), [true]);
    }

    #[test]
    fn an_expired_copy_is_not_stored() {
        let copies = vec![found("a", 5, NOW as i64), found("b", 5, NOW as i64 + 1)];
        assert_eq!(stored(copies, &[5, 5]), [false, true]);
    }

    #[test]
    fn a_copy_at_or_below_the_retention_floor_is_not_stored_before_the_trimmer_deletes_it() {
        let copies = vec![found("a", 5, 2_000_000), found("b", 5, 2_000_000)];
        // Ten seqs kept: a's floor is 15 - 10 = 5, b's 14 - 10 = 4.
        assert_eq!(stored(copies, &[15, 14]), [false, true]);
    }
}
