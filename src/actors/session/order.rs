//! The ordering core of one session: which message frames go out, in which order, and when
//! the store must be read. A plain state machine with no I/O and no actix: the session feeds
//! it events (a store page, a live push, a failed read, an ack) and carries out the
//! [`Action`]s it returns.
//!
//! # The rule
//!
//! `delivered` is the highest seq written towards the socket. Frames go out in strictly
//! increasing seq order, each at most once. `delivered` moves past a seq without sending it
//! only on **store evidence** that the seq will never be delivered:
//! - the store's page skips it between two messages it returns, or reports it below the
//!   page's `settled_upto` (see [`Page`]): expired, trimmed, or an append that gave up;
//! - the resume point or the replay limit, which the client is told about with
//!   `history_truncated` (and the resume point is the client's own word).
//!
//! A live push ahead of `delivered + 1` is held and the store is read from `delivered`. A
//! page's `settled_upto` covers a held push only when the read was *issued after* that push
//! arrived: a read that started earlier cannot know about seqs reserved after it began.
//! Nothing else (no timeout, no count of attempts) ever skips a seq: a store that cannot
//! say is read again, with a growing pause.

use std::collections::BTreeMap;
use std::time::Duration;

use smallvec::{smallvec, SmallVec};

use crate::frames::Frame;
use crate::ids::Seq;
use crate::store::Page;

/// Pause before reading again when the store held a page back, or a gap is still open.
pub const GAP_RETRY: Duration = Duration::from_millis(100);
/// Longest pause between reads of a gap that stays open.
pub const GAP_RETRY_MAX: Duration = Duration::from_secs(1);
/// Pause before reading again after a store read failed.
pub const STORE_RETRY: Duration = Duration::from_secs(1);
/// Attempts at the initial read before the session gives up (the client reconnects later).
pub const INITIAL_ATTEMPTS: u8 = 5;

/// Limits of one session's core.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Messages per store read.
    pub page_size: usize,
    /// Most messages replayed on connect; older ones are reported as truncated.
    pub replay_limit: u64,
    /// Live pushes held while a read runs; past it a push is left to the store.
    pub pending_cap: usize,
}

/// What one event asks of the session: mostly one frame or nothing, kept inline (no
/// allocation per push).
pub type Actions = SmallVec<[Action; 2]>;

/// What the session must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send the welcome frame (first frame of the session).
    Welcome { last_seq: Seq },
    /// Send a `history_truncated` frame: seqs `after + 1 .. resume_from` will not be sent.
    Truncated { after: Seq, resume_from: Seq },
    /// Send this message frame (seq order is the core's job).
    Frame { seq: Seq, frame: Frame },
    /// `delivered` moved past `from..=to` without frames, on store evidence: log and count.
    Skipped { from: Seq, to: Seq },
    /// Read the store: messages after `from`, at most `limit`, once `delay` has passed
    /// (and the outbound queue has room). Answer with [`Order::on_page`], giving the seq
    /// the read really started after, or [`Order::on_read_failed`].
    Read {
        from: ReadFrom,
        limit: usize,
        delay: Duration,
    },
    /// The initial read failed too often: tell the client and close (1001).
    GiveUp,
}

/// Where a read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// After this seq.
    After(Seq),
    /// After the device's ack cursor (its resume point when the client gave no `since`).
    DeviceCursor,
}

/// A live push held until the seqs before it are settled.
#[derive(Debug)]
struct Held {
    frame: Frame,
    /// Reads issued when it arrived: only later reads' verdicts apply to it.
    epoch: u64,
}

/// The read the core is waiting for.
#[derive(Debug, Clone, Copy)]
struct Outstanding {
    /// Number of this read (reads issued so far, itself included).
    epoch: u64,
    initial: bool,
    attempt: u8,
}

/// The ordering state of one session.
#[derive(Debug)]
pub struct Order {
    limits: Limits,
    /// Where the session resumes from (seqs at or below it are the client's already):
    /// `None` for the device's cursor, read with the first page.
    resume: Option<Seq>,
    /// Highest seq sent (or skipped on evidence).
    delivered: Seq,
    /// Highest seq acked by the client (never above `delivered`).
    acked: Seq,
    /// Live pushes ahead of `delivered + 1`, by seq.
    pending: BTreeMap<Seq, Held>,
    /// Highest seq a push showed to be stored, with the epoch it was last raised at; covers
    /// pushes that did not fit in `pending`.
    known: (Seq, u64),
    /// Reads issued so far.
    epoch: u64,
    /// The read in flight (or scheduled); `None` when idle.
    reading: Option<Outstanding>,
    /// Consecutive follow-up reads that settled nothing new, for the retry pause.
    stalled: u32,
}

impl Order {
    /// A session resuming after `resume` (`None`: after the device's ack cursor); returns
    /// the core and its first read.
    pub fn start(resume: Option<Seq>, limits: Limits) -> (Order, Action) {
        let mut o = Order {
            limits,
            resume,
            delivered: 0,
            acked: 0,
            pending: BTreeMap::new(),
            known: (0, 0),
            epoch: 0,
            reading: None,
            stalled: 0,
        };
        let read = o.issue_initial(Duration::ZERO, 0);
        (o, read)
    }

    /// Highest seq sent towards the socket.
    pub fn delivered(&self) -> Seq {
        self.delivered
    }

    /// Whether a store read is in flight or scheduled.
    pub fn is_reading(&self) -> bool {
        self.reading.is_some()
    }

    /// Live pushes held now.
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    fn issue_initial(&mut self, delay: Duration, attempt: u8) -> Action {
        let from = self.resume.map_or(ReadFrom::DeviceCursor, ReadFrom::After);
        self.issue_from(from, delay, true, attempt)
    }

    /// A follow-up read after `delivered`.
    fn issue(&mut self, delay: Duration) -> Action {
        self.issue_from(ReadFrom::After(self.delivered), delay, false, 0)
    }

    fn issue_from(
        &mut self,
        from: ReadFrom,
        delay: Duration,
        initial: bool,
        attempt: u8,
    ) -> Action {
        self.epoch += 1;
        self.reading = Some(Outstanding {
            epoch: self.epoch,
            initial,
            attempt,
        });
        Action::Read {
            from,
            limit: self.limits.page_size,
            delay,
        }
    }

    fn send(&mut self, seq: Seq, frame: Frame, out: &mut Actions) {
        debug_assert_eq!(seq, self.delivered + 1);
        self.delivered = seq;
        out.push(Action::Frame { seq, frame });
    }

    /// Moves `delivered` to `to` without frames (store evidence), reporting it.
    fn skip_to(&mut self, to: Seq, out: &mut Actions) {
        if to > self.delivered {
            out.push(Action::Skipped {
                from: self.delivered + 1,
                to,
            });
            self.delivered = to;
        }
    }

    /// A live push of the session's user.
    pub fn on_push(&mut self, seq: Seq, frame: Frame) -> Actions {
        let mut out = Actions::new();
        if seq <= self.delivered {
            return out;
        }
        if seq > self.known.0 {
            self.known = (seq, self.epoch);
        }
        if self.reading.is_none() && seq == self.delivered + 1 {
            self.send(seq, frame, &mut out);
            return out;
        }
        if self.pending.len() < self.limits.pending_cap {
            let epoch = self.epoch;
            self.pending.insert(seq, Held { frame, epoch });
        }
        if self.reading.is_none() {
            // A gap: read what lies between.
            let read = self.issue(Duration::ZERO);
            out.push(read);
        }
        out
    }

    /// The client acked `seq`; answers the ack to persist, if it moves the cursor.
    pub fn on_ack(&mut self, seq: Seq) -> Option<Seq> {
        let seq = seq.min(self.delivered);
        (seq > self.acked).then(|| {
            self.acked = seq;
            seq
        })
    }

    /// The node's periodic position check says the store's newest seq for the user is
    /// `last_seq`: a session behind it reads what it missed (a live push was lost, or is
    /// still on its way). `last_seq` counts as known like a push's seq: the read goes on
    /// until the store delivers or settles everything up to it, and a seq the store settles
    /// (an append that gave up) is passed over once, not read again at every check.
    pub fn on_position(&mut self, last_seq: Seq) -> Actions {
        if last_seq <= self.delivered {
            return Actions::new();
        }
        if last_seq > self.known.0 {
            self.known = (last_seq, self.epoch);
        }
        if self.reading.is_some() {
            return Actions::new();
        }
        smallvec![self.issue(Duration::ZERO)]
    }

    /// The outstanding read failed.
    pub fn on_read_failed(&mut self) -> Actions {
        let Some(r) = self.reading.take() else {
            return Actions::new();
        };
        if r.initial {
            if r.attempt + 1 >= INITIAL_ATTEMPTS {
                return smallvec![Action::GiveUp];
            }
            return smallvec![self.issue_initial(STORE_RETRY, r.attempt + 1)];
        }
        // A failed read says nothing about the missing seqs: keep holding, read again.
        smallvec![self.issue(STORE_RETRY)]
    }

    /// The outstanding read, which started after `after`, answered `page`.
    pub fn on_page(&mut self, after: Seq, page: Page) -> Actions {
        let Some(read) = self.reading.take() else {
            return Actions::new();
        };
        let mut out = Actions::new();
        let before = self.delivered;
        if read.initial {
            out.push(Action::Welcome {
                last_seq: page.last_seq,
            });
            // A resume point beyond the newest seq means "nothing missed".
            self.resume = Some(after);
            self.delivered = after.min(page.last_seq);
            let newest_allowed = page.last_seq.saturating_sub(self.limits.replay_limit);
            if newest_allowed > self.delivered {
                // More missed than the replay limit: only the newest are replayed, from a
                // fresh read (this page started too early).
                out.push(Action::Truncated {
                    after: self.delivered,
                    resume_from: newest_allowed + 1,
                });
                self.delivered = newest_allowed;
                out.push(self.issue(Duration::ZERO));
                return out;
            }
        }
        if page.first_retained > self.delivered + 1 && page.last_seq > self.delivered {
            // Retention dropped what this session had not seen yet.
            let resume_from = page.first_retained.min(page.last_seq + 1);
            out.push(Action::Truncated {
                after: self.delivered,
                resume_from,
            });
            self.delivered = resume_from - 1;
        }
        for (seq, frame) in page.messages {
            if seq <= self.delivered {
                continue;
            }
            // The page's contract: a seq it passes over is settled (gone).
            self.skip_to(seq - 1, &mut out);
            self.send(seq, frame, &mut out);
        }
        if page.more {
            // A full page: the replay goes on (the session waits for outbound room). Its
            // verdict reaches as far as it read, so expired copies at its end are passed
            // (else a page of nothing but expired copies would be read forever).
            self.skip_to(page.settled_upto, &mut out);
            let delivered = self.delivered;
            self.pending.retain(|s, _| *s > delivered);
            out.push(self.issue(Duration::ZERO));
            return out;
        }
        self.drain(read.epoch, page.settled_upto, &mut out);
        let open = !self.pending.is_empty() || self.known.0 > self.delivered;
        if !open && !page.held_back {
            self.stalled = 0;
            return out;
        }
        // Something known to be stored is still ahead: read again. At once when a push
        // arrived after this read was issued (news the read could not see), else after a
        // pause that grows while the store gives no verdict.
        let news = self.pending.values().any(|h| h.epoch >= read.epoch)
            || (self.known.0 > self.delivered && self.known.1 >= read.epoch);
        let delay = if news && !page.held_back {
            Duration::ZERO
        } else {
            if self.delivered == before {
                self.stalled = self.stalled.saturating_add(1);
            } else {
                self.stalled = 0;
            }
            (GAP_RETRY * self.stalled.clamp(1, 10)).min(GAP_RETRY_MAX)
        };
        out.push(self.issue(delay));
        out
    }

    /// Sends held pushes that are next in order; moves past a gap before a held push only
    /// when the read (number `epoch`) was issued after the push arrived and the store
    /// settled every seq of the gap.
    fn drain(&mut self, epoch: u64, settled_upto: Seq, out: &mut Actions) {
        while let Some(entry) = self.pending.first_entry() {
            let seq = *entry.key();
            if seq <= self.delivered {
                entry.remove();
                continue;
            }
            let settled = entry.get().epoch < epoch && settled_upto >= seq - 1;
            if seq == self.delivered + 1 || settled {
                let held = entry.remove();
                self.skip_to(seq - 1, out);
                self.send(seq, held.frame, out);
            } else {
                break;
            }
        }
        // A push that did not fit in `pending` and that the store no longer has (expired):
        // nothing is left to wait for.
        let (known, known_epoch) = self.known;
        if self.pending.is_empty()
            && known > self.delivered
            && known_epoch < epoch
            && settled_upto >= known
        {
            self.skip_to(known, out);
        }
    }
}

#[cfg(test)]
#[path = "order_tests.rs"]
mod tests;
