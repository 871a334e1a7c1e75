//! The deciding half of group commit (`commit.rs` does the I/O): which waiting requests
//! form the next append, and when it may start. Plain state, no I/O.
//!
//! An append starts at once when none is in flight, so an idle node adds no delay. While
//! one runs, another starts only for at least `overlap_min` waiting messages (up to
//! `max_in_flight` at once): every append costs the store a few commands whatever its
//! size, and overlapping small appends would split the waiting messages into more of them
//! (measured on SecantusDB with one POST per message, overlapping every append: 16-25% more
//! store CPU per message than one append at a time, and a 7-13% lower rate, in two
//! interleaved pairs of runs). The append that starts takes every request that waited (up to
//! `max_messages` messages, never splitting a request), so a busy node sends bigger
//! batches. Requests go out in the order they came.

use std::collections::VecDeque;

/// Waiting requests and the appends in flight.
#[derive(Debug)]
pub struct Batcher<R> {
    /// Requests not yet in an append, oldest first, each with its message count.
    waiting: VecDeque<(usize, R)>,
    /// Messages in `waiting`.
    waiting_messages: usize,
    /// Appends started and not yet finished.
    in_flight: usize,
    max_in_flight: usize,
    /// Fewest waiting messages for which an append starts while another runs.
    overlap_min: usize,
    /// Most messages in one append, unless a single request holds more.
    max_messages: usize,
}

impl<R> Batcher<R> {
    /// `max_in_flight` and `max_messages` are at least 1.
    pub fn new(max_in_flight: usize, overlap_min: usize, max_messages: usize) -> Self {
        Self {
            waiting: VecDeque::new(),
            waiting_messages: 0,
            in_flight: 0,
            max_in_flight: max_in_flight.max(1),
            overlap_min,
            max_messages: max_messages.max(1),
        }
    }

    /// A request of `messages` messages arrived.
    pub fn push(&mut self, messages: usize, request: R) {
        self.waiting.push_back((messages, request));
        self.waiting_messages += messages;
    }

    /// The requests of the next append, if a slot is free and something waits; the caller
    /// starts it and reports [`finished`](Self::finished) when it is done.
    pub fn next_batch(&mut self) -> Option<Vec<(usize, R)>> {
        let may_start = match self.in_flight {
            0 => !self.waiting.is_empty(),
            n => n < self.max_in_flight && self.waiting_messages >= self.overlap_min.max(1),
        };
        if !may_start {
            return None;
        }
        let mut total = 0;
        let mut batch = Vec::new();
        while let Some((n, _)) = self.waiting.front() {
            if !batch.is_empty() && total + n > self.max_messages {
                break;
            }
            total += n;
            self.waiting_messages -= n;
            // unwrap: front() just returned an element.
            batch.push(self.waiting.pop_front().unwrap());
        }
        self.in_flight += 1;
        Some(batch)
    }

    /// An append started by [`next_batch`](Self::next_batch) finished.
    pub fn finished(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Appends running now.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Nothing waits and nothing runs.
    pub fn is_idle(&self) -> bool {
        self.in_flight == 0 && self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(batch: Option<Vec<(usize, &'static str)>>) -> Vec<&'static str> {
        batch
            .unwrap_or_default()
            .into_iter()
            .map(|(_, r)| r)
            .collect()
    }

    #[test]
    fn a_request_on_an_idle_node_starts_at_once_alone() {
        let mut b = Batcher::new(2, 1, 100);
        b.push(1, "a");
        assert_eq!(names(b.next_batch()), ["a"]);
        assert_eq!(b.in_flight(), 1);
    }

    #[test]
    fn requests_wait_while_every_slot_is_taken_then_go_together_in_order() {
        let mut b = Batcher::new(2, 1, 100);
        b.push(1, "a");
        b.push(1, "b");
        assert_eq!(names(b.next_batch()), ["a", "b"]);
        b.push(1, "c");
        assert_eq!(names(b.next_batch()), ["c"]);
        b.push(1, "d");
        b.push(5, "e");
        assert!(b.next_batch().is_none(), "both slots taken");
        b.finished();
        assert_eq!(names(b.next_batch()), ["d", "e"]);
        assert!(b.next_batch().is_none());
    }

    #[test]
    fn while_one_append_runs_another_starts_only_for_enough_waiting_messages() {
        let mut b = Batcher::new(2, 10, 100);
        b.push(1, "a");
        assert_eq!(names(b.next_batch()), ["a"]);
        for r in ["b", "c", "d"] {
            b.push(3, r);
        }
        assert!(
            b.next_batch().is_none(),
            "9 waiting messages wait for the running append"
        );
        b.push(1, "e");
        assert_eq!(
            names(b.next_batch()),
            ["b", "c", "d", "e"],
            "10 go alongside"
        );
        b.push(50, "f");
        assert!(b.next_batch().is_none(), "both slots taken");
        b.finished();
        b.finished();
        b.push(1, "g");
        assert_eq!(
            names(b.next_batch()),
            ["f", "g"],
            "an idle store takes anything"
        );
    }

    #[test]
    fn an_append_stops_at_the_message_cap_without_splitting_a_request() {
        let mut b = Batcher::new(1, 1, 10);
        for (n, r) in [(4, "a"), (4, "b"), (4, "c"), (30, "d")] {
            b.push(n, r);
        }
        assert_eq!(names(b.next_batch()), ["a", "b"]);
        b.finished();
        assert_eq!(names(b.next_batch()), ["c"]);
        b.finished();
        assert_eq!(
            names(b.next_batch()),
            ["d"],
            "a request over the cap goes alone"
        );
        b.finished();
        assert!(b.is_idle());
    }

    #[test]
    fn nothing_starts_when_nothing_waits() {
        let mut b: Batcher<()> = Batcher::new(3, 1, 10);
        assert!(b.next_batch().is_none());
        assert!(b.is_idle());
        b.finished();
        assert_eq!(b.in_flight(), 0);
    }
}
