//! Turns of the appends of one store running at once: they reserve seqs one at a time, in
//! the order they ask, and answer in that same order. Owns no I/O of its own.
//!
//! Group commit (`ingest/commit.rs`) keeps more than one append in flight so that one
//! batch's insert overlaps the next batch's reservation. Two appends reserving at once
//! would still give every user strictly increasing seqs, but the one with a user's higher
//! seqs could answer first; its messages would reach the user's sessions ahead of a seq
//! still on its way, and every such session would read the store for the gap and wait for
//! the store's verdict on it. Taking turns keeps one node's deliveries in seq order:
//! - [`Turns::reserve`] waits for the previous append's reservation to end (a fair tokio
//!   mutex: first come, first served) and hands back the append's [`Turn`];
//! - dropping the [`Reserving`] guard lets the next append reserve (its insert and this
//!   one's then run at the same time);
//! - [`Turn::answer`] waits until the previous append has answered (or failed, or been
//!   dropped on its timeout) before this one answers; dropping the turn lets the next go.
//!
//! A failed append answers in its turn too, so a later append never answers before an
//! earlier one that is still running. Waiting is bounded by the appends' own budget: an
//! append past it is dropped, which ends its turn.

use tokio::sync::{oneshot, Mutex, MutexGuard};

/// The turn-taking of one store's appends.
#[derive(Default)]
pub struct Turns {
    /// Held while an append reserves; holds the end signal of the latest append that
    /// reserved, for the next one to wait on before answering.
    reserving: Mutex<Option<oneshot::Receiver<()>>>,
}

/// An append's place in line: answers after the append before it.
pub struct Turn {
    /// Ends when the previous append answered (or was dropped); `None` for the first.
    previous: Option<oneshot::Receiver<()>>,
    /// Dropped when this append answered: the next one's `previous`.
    _done: oneshot::Sender<()>,
}

/// The right to reserve seqs now; the next append reserves once it is dropped.
pub struct Reserving<'a>(#[allow(dead_code)] MutexGuard<'a, Option<oneshot::Receiver<()>>>);

impl Turns {
    /// Waits for this append's turn to reserve; answers the guard to hold while
    /// reserving and the turn to answer in.
    pub async fn reserve(&self) -> (Reserving<'_>, Turn) {
        let mut guard = self.reserving.lock().await;
        let (done, next) = oneshot::channel();
        let previous = guard.replace(next);
        (
            Reserving(guard),
            Turn {
                previous,
                _done: done,
            },
        )
    }
}

impl Turn {
    /// Waits until the previous append answered, then answers `result` (ending this turn).
    pub async fn answer<T>(mut self, result: T) -> T {
        if let Some(previous) = self.previous.take() {
            // Err: the previous append was dropped, which ends its turn just the same.
            let _ = previous.await;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex as StdMutex};

    use super::*;

    #[tokio::test]
    async fn appends_answer_in_the_order_they_reserved_whatever_order_they_finish_in() {
        let turns = Turns::default();
        let (g1, t1) = turns.reserve().await;
        drop(g1);
        let (g2, t2) = turns.reserve().await;
        drop(g2);
        let (g3, t3) = turns.reserve().await;
        drop(g3);
        let order = Arc::new(StdMutex::new(Vec::new()));
        let answer = |turn: Turn, n: u32| {
            let order = order.clone();
            async move {
                let n = turn.answer(n).await;
                order.lock().unwrap().push(n);
            }
        };
        // The third and second finish first; they wait for the first.
        let late = tokio::spawn(answer(t3, 3));
        let mid = tokio::spawn(answer(t2, 2));
        tokio::task::yield_now().await;
        assert!(
            order.lock().unwrap().is_empty(),
            "nobody answers before the first"
        );
        answer(t1, 1).await;
        mid.await.unwrap();
        late.await.unwrap();
        assert_eq!(*order.lock().unwrap(), [1, 2, 3]);
    }

    #[tokio::test]
    async fn a_dropped_append_ends_its_turn() {
        let turns = Turns::default();
        let (g1, t1) = turns.reserve().await;
        drop(g1);
        let (g2, t2) = turns.reserve().await;
        drop(g2);
        drop(t1);
        assert_eq!(t2.answer("second").await, "second");
    }

    #[tokio::test]
    async fn the_next_append_reserves_only_once_the_guard_is_dropped() {
        let turns = Arc::new(Turns::default());
        let (g1, _t1) = turns.reserve().await;
        let t = turns.clone();
        let next = tokio::spawn(async move {
            let (_g, _turn) = t.reserve().await;
        });
        tokio::task::yield_now().await;
        assert!(!next.is_finished(), "waits while the first reserves");
        drop(g1);
        next.await.unwrap();
    }
}
