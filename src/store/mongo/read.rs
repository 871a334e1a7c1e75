//! The read path: a user's newest seq and pages of its messages.
//!
//! Seqs are reserved before their copies are stored, and appends on different nodes race:
//! seq 6 may be stored while seq 5 is still on its way. A page must never pass over a seq
//! that may still be stored (the [`Page`] contract), and it decides that from two stamps,
//! never from a second look at the collection (a copy inserted between two queries would
//! read as "there after all" and be skipped):
//! - every copy carries `at`, taken once its seq was reserved. A seq missing before a copy
//!   whose `at` is more than one append budget (`op_timeout_ms` times
//!   [`APPEND_BUDGET_CALLS`]) older than the read's start was reserved earlier still, by an
//!   append that has finished or given up by now: it is a gap for good. A younger one ends
//!   the page (`held_back`), and the session reads again.
//! - the counter carries `at`, the latest time any append reserved from it. Once that is
//!   one budget before the read's start, every seq up to the counter is final: what the
//!   read did not find will never be stored (`settled_upto` covers them all).
//!
//! Expired copies are read like live ones (the query does not filter them, so they settle
//! their seq and anchor the gap before them) and then left out of the page. This assumes
//! the nodes share `op_timeout_ms` and their clocks agree to well within the budget.

use std::collections::HashMap;
use std::future::IntoFuture;

use bytestring::ByteString;
use futures_util::TryStreamExt;
use mongodb::bson::{doc, Document, RawDocumentBuf};

use super::error::MongoError;
use super::{call, seq_field, to_i64, AsRawOrDoc, MongoStore, APPEND_BUDGET_CALLS};
use crate::clock::now_ms;
use crate::frames::Frame;
use crate::ids::{Seq, UserId};
use crate::store::Page;

/// Most ids in one `$in` query. SecantusDB's planner costs the square of a query's ids (a
/// position check of 9 000 users in one query: ~400 ms of its CPU; in chunks of 500:
/// ~70 ms); MongoDB does not mind either way.
const IDS_PER_QUERY: usize = 500;

/// A user's counter: the newest seq handed out and when the last block was reserved.
pub(super) struct Counter {
    pub seq: Seq,
    /// Unix ms of the latest reservation (0 for counters written before stamps existed).
    pub at: u64,
}

impl MongoStore {
    pub(super) async fn load_counter(&self, user: &UserId) -> Result<Counter, MongoError> {
        let found = call(self.op_timeout, "read counter", || {
            self.counters
                .find_one(doc! {"_id": user.as_str()})
                .projection(doc! {"seq": 1, "at": 1})
                .into_future()
        })
        .await?;
        match found {
            None => Ok(Counter { seq: 0, at: 0 }),
            Some(d) => Ok(Counter {
                seq: seq_field(&d, "seq", "read counter")?,
                at: d.number("at").map_or(0, |a| a.max(0) as u64),
            }),
        }
    }

    /// The counters of `users`, in order (0 for a user without one).
    pub(super) async fn load_counters(&self, users: &[UserId]) -> Result<Vec<Seq>, MongoError> {
        const OP: &str = "read counters";
        let ids: Vec<&str> = users.iter().map(|u| u.as_str()).collect();
        let found = self.counters_by_id(&ids, doc! {"seq": 1}, OP).await?;
        let mut seqs: HashMap<&str, Seq> = HashMap::with_capacity(found.len());
        for d in &found {
            let id = d
                .get_str("_id")
                .map_err(|_| MongoError::reply(OP, "counter without an id"))?;
            seqs.insert(id, seq_field(d, "seq", OP)?);
        }
        Ok(ids
            .iter()
            .map(|id| seqs.get(id).copied().unwrap_or(0))
            .collect())
    }

    /// The counter documents (`_id` and `projection`) of those of `ids` that have one, in
    /// one query per [`IDS_PER_QUERY`] ids.
    pub(super) async fn counters_by_id(
        &self,
        ids: &[&str],
        projection: Document,
        op: &'static str,
    ) -> Result<Vec<RawDocumentBuf>, MongoError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let found: Vec<RawDocumentBuf> = call(self.op_timeout, op, || async {
                self.counters
                    .clone_with_type::<RawDocumentBuf>()
                    .find(doc! {"_id": {"$in": chunk}})
                    .projection(projection.clone())
                    // At most one document per id: with the limit reached the server
                    // closes the cursor in its first reply, so no `getMore` follows.
                    .limit(i64::try_from(chunk.len()).unwrap_or(i64::MAX))
                    .batch_size(u32::try_from(chunk.len()).unwrap_or(u32::MAX))
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
            out.extend(found);
        }
        Ok(out)
    }

    /// Messages with `seq > after` (and above the retention floor), oldest first, at most
    /// `limit`, unexpired, up to the first seq that may still be stored.
    pub(super) async fn read_page(
        &self,
        user: &UserId,
        after: Seq,
        limit: usize,
    ) -> Result<Page, MongoError> {
        // The read starts now: stamps are judged against this instant, taken before any
        // query, so anything the queries miss was not stored when they ran.
        let started = now_ms();
        let budget = (self.op_timeout * APPEND_BUDGET_CALLS).as_millis() as u64;
        let counter = self.load_counter(user).await?;
        let last = counter.seq;
        if last == 0 {
            // Nothing was ever reserved for the user.
            return Ok(Page {
                settled_upto: after,
                ..Page::default()
            });
        }
        let floor = last.saturating_sub(self.max_per_user);
        let start = after.max(floor);
        let counter_final = started >= counter.at.saturating_add(budget);
        let mut page = Page {
            messages: Vec::new(),
            last_seq: last,
            first_retained: floor + 1,
            settled_upto: start,
            more: false,
            held_back: false,
        };
        if limit == 0 || start >= last {
            if counter_final {
                page.settled_upto = start.max(last);
            }
            return Ok(page);
        }
        let filter = doc! {"user": user.as_str(), "seq": {"$gt": to_i64(start)}};
        // One batch: the server sends up to `limit` documents (or 16 MiB) in its first reply.
        let limit_i = i64::try_from(limit).unwrap_or(i64::MAX);
        let docs: Vec<RawDocumentBuf> = call(self.op_timeout, "read messages", || async {
            self.messages
                .find(filter.clone())
                .sort(doc! {"seq": 1})
                .limit(limit_i)
                .batch_size(u32::try_from(limit).unwrap_or(u32::MAX))
                .projection(doc! {"_id": 0, "seq": 1, "frame": 1, "at": 1, "expires_at": 1})
                .await?
                .try_collect()
                .await
        })
        .await?;
        self.after_find(user).await;
        fill_page(&mut page, &docs, start, started, budget)?;
        page.more = !page.held_back && docs.len() == limit;
        if !page.held_back && !page.more && counter_final {
            page.settled_upto = page.settled_upto.max(last);
        }
        Ok(page)
    }
}

/// Copies the found documents (seq > `start`, ascending) into `page` up to the first hole
/// that a write still within its `budget` may fill, skipping expired copies; `started` is
/// the instant the read began.
fn fill_page(
    page: &mut Page,
    docs: &[RawDocumentBuf],
    start: Seq,
    started: u64,
    budget: u64,
) -> Result<(), MongoError> {
    page.messages.reserve(docs.len());
    let mut expected = start + 1;
    for d in docs {
        let seq = seq_field(d, "seq", "read messages")?;
        if seq > expected {
            let at = d.number("at").map_or(0, |a| a.max(0) as u64);
            if started < at.saturating_add(budget) {
                // A seq before this copy may still be on its way in.
                page.held_back = true;
                break;
            }
        }
        expected = seq + 1;
        page.settled_upto = seq;
        page.last_seq = page.last_seq.max(seq);
        let expired = d
            .get_datetime("expires_at")
            .is_ok_and(|e| e.timestamp_millis() <= to_i64(started));
        if !expired {
            let frame = d
                .get_str("frame")
                .map_err(|_| MongoError::reply("read messages", "message without a frame"))?;
            page.messages
                .push((seq, Frame::from(ByteString::from(frame))));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{rawdoc, DateTime};

    use super::*;

    const BUDGET: u64 = 1_000;
    const NOW: u64 = 1_000_000;

    fn copy(seq: i64, at: u64, expires: u64) -> RawDocumentBuf {
        rawdoc! {
            "seq": seq,
            "frame": format!("m{seq}"),
            "at": at as i64,
            "expires_at": DateTime::from_millis(expires as i64),
        }
    }

    fn fill(docs: &[RawDocumentBuf], start: Seq) -> Page {
        let mut page = Page {
            settled_upto: start,
            ..Page::default()
        };
        fill_page(&mut page, docs, start, NOW, BUDGET).unwrap();
        page
    }

    fn seqs(page: &Page) -> Vec<Seq> {
        page.messages.iter().map(|(s, _)| *s).collect()
    }

    #[test]
    fn a_contiguous_run_is_returned_and_settled() {
        let far = NOW + 60_000;
        let page = fill(&[copy(3, 0, far), copy(4, 0, far), copy(5, 0, far)], 2);
        assert_eq!(seqs(&page), [3, 4, 5]);
        assert_eq!(page.settled_upto, 5);
        assert!(!page.held_back);
    }

    #[test]
    fn a_hole_before_a_young_copy_holds_the_page_back() {
        let far = NOW + 60_000;
        let young = NOW - BUDGET / 2;
        let page = fill(&[copy(1, 0, far), copy(3, young, far)], 0);
        assert_eq!(seqs(&page), [1]);
        assert_eq!(page.settled_upto, 1);
        assert!(page.held_back);
    }

    #[test]
    fn a_hole_before_a_copy_older_than_the_budget_is_a_gap_for_good() {
        let far = NOW + 60_000;
        let old = NOW - BUDGET;
        let page = fill(&[copy(1, 0, far), copy(3, old, far)], 0);
        assert_eq!(seqs(&page), [1, 3]);
        assert_eq!(page.settled_upto, 3);
        assert!(!page.held_back);
    }

    #[test]
    fn an_expired_copy_settles_its_seq_but_is_left_out() {
        let far = NOW + 60_000;
        let page = fill(&[copy(1, 0, NOW), copy(2, 0, far)], 0);
        assert_eq!(seqs(&page), [2]);
        assert_eq!(page.settled_upto, 2);
        assert_eq!(page.last_seq, 2);
    }

    #[test]
    fn a_copy_without_a_frame_is_a_bad_reply() {
        let doc = rawdoc! {"seq": 1_i64, "at": 0_i64};
        let mut page = Page::default();
        assert!(fill_page(&mut page, &[doc], 0, NOW, BUDGET).is_err());
    }
}
