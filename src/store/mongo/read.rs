//! The read path: a user's newest seq and pages of its messages.
//!
//! Seqs are reserved before their copies are stored, and appends on different nodes race:
//! seq 6 may be stored while seq 5 is still on its way. A page therefore stops before a
//! missing seq while it may still arrive: while the message after it was stamped (`at`,
//! taken once its seqs were reserved) less than one append budget (`op_timeout_ms` times
//! [`APPEND_BUDGET_CALLS`]) ago. The missing seq was reserved before that stamp, and its
//! append gives up within the budget. A missing seq whose copy exists but expired is no
//! hole. Past the budget a missing seq is a gap for good (a failed append) and pages go on
//! over it. So a reader never skips a message that is about to be stored; a page may end
//! early instead (holes are rare: failed or racing appends). This assumes the nodes share
//! `op_timeout_ms` and their clocks agree to well within the budget.

use std::future::IntoFuture;

use bytestring::ByteString;
use futures_util::TryStreamExt;
use mongodb::bson::{doc, DateTime, RawDocumentBuf};

use super::error::MongoError;
use super::{call, seq_field, to_i64, AsRawOrDoc, MongoStore, APPEND_BUDGET_CALLS};
use crate::ids::{Seq, UserId};
use crate::store::{now_ms, Page};

impl MongoStore {
    pub(super) async fn load_last_seq(&self, user: &UserId) -> Result<Seq, MongoError> {
        let found = call(self.op_timeout, "read counter", || {
            self.counters
                .find_one(doc! {"_id": user.as_str()})
                .projection(doc! {"seq": 1})
                .into_future()
        })
        .await?;
        found.map_or(Ok(0), |d| seq_field(&d, "seq", "read counter"))
    }

    /// Messages with `seq > after` (and above the retention floor), oldest first, at most
    /// `limit`, unexpired, up to the first seq that may still be stored.
    pub(super) async fn read_page(
        &self,
        user: &UserId,
        after: Seq,
        limit: usize,
    ) -> Result<Page, MongoError> {
        let last = self.load_last_seq(user).await?;
        if last == 0 {
            return Ok(Page::default());
        }
        let floor = last.saturating_sub(self.max_per_user);
        let mut page = Page {
            messages: Vec::new(),
            last_seq: last,
            first_retained: floor + 1,
            held_back: false,
        };
        let start = after.max(floor);
        if limit == 0 || start >= last {
            return Ok(page);
        }
        let now = now_ms();
        let filter = doc! {
            "user": user.as_str(),
            "seq": {"$gt": to_i64(start)},
            "expires_at": {"$gt": DateTime::from_millis(to_i64(now))},
        };
        // One batch: the server sends up to `limit` documents (or 16 MiB) in its first reply.
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let docs: Vec<RawDocumentBuf> = call(self.op_timeout, "read messages", || async {
            self.messages
                .find(filter.clone())
                .sort(doc! {"seq": 1})
                .limit(limit)
                .batch_size(u32::try_from(limit).unwrap_or(u32::MAX))
                .projection(doc! {"_id": 0, "seq": 1, "frame": 1, "at": 1})
                .await?
                .try_collect()
                .await
        })
        .await?;
        page.messages.reserve(docs.len());
        let mut expected = start + 1;
        for d in &docs {
            let seq = seq_field(d, "seq", "read messages")?;
            let frame = d
                .get_str("frame")
                .map_err(|_| MongoError::reply("read messages", "message without a frame"))?;
            if seq > expected {
                let at = d.number("at").map_or(0, |a| a.max(0) as u64);
                if self
                    .may_still_be_stored(user, expected, seq - 1, at, now)
                    .await?
                {
                    page.held_back = true;
                    break;
                }
            }
            expected = seq + 1;
            page.last_seq = page.last_seq.max(seq);
            page.messages.push((seq, ByteString::from(frame)));
        }
        Ok(page)
    }

    /// Whether some seq of `from..=to` (missing from a read) may still be stored: the next
    /// stored message was stamped at `at`, less than one append budget before `now`, and
    /// not every seq of the range has an (expired) copy.
    async fn may_still_be_stored(
        &self,
        user: &UserId,
        from: Seq,
        to: Seq,
        at: u64,
        now: u64,
    ) -> Result<bool, MongoError> {
        let budget = (self.op_timeout * APPEND_BUDGET_CALLS).as_millis() as u64;
        if now >= at.saturating_add(budget) {
            return Ok(false);
        }
        let filter =
            doc! {"user": user.as_str(), "seq": {"$gte": to_i64(from), "$lte": to_i64(to)}};
        let present = call(self.op_timeout, "read missing seqs", || {
            self.messages.count_documents(filter.clone()).into_future()
        })
        .await?;
        Ok(present < to - from + 1)
    }
}
