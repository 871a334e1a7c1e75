//! The memory store's message id -> copies index, as plain data without locking or clocks:
//! which users were given a copy of each stored message, at which seq. An id stays
//! indexed while at least one of its copies is still in a user's log and is forgotten
//! with the last one; the index's bytes count in the store's byte budget (`log.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use crate::ids::{Seq, UserId};

/// Bytes an indexed id costs beyond its text and copies (map slot, counters, the boxed
/// slice's header), roughly.
const ID_OVERHEAD: usize = 64;
/// Bytes one copy record costs: the user (a shared pointer) and its seq.
const COPY_COST: usize = std::mem::size_of::<(UserId, Seq)>();

/// One indexed message.
struct Indexed {
    /// Every copy it was stored as, in recipient order; copies that left their log stay
    /// here (reported as no longer stored) until the last one goes.
    copies: Box<[(UserId, Seq)]>,
    /// How many of `copies` are still in their user's log.
    live: usize,
}

/// Message id -> its copies, with the bytes it costs.
#[derive(Default)]
pub struct IdIndex {
    ids: HashMap<Arc<str>, Indexed>,
    /// What the index costs: [`cost`] of every entry.
    bytes: usize,
}

impl IdIndex {
    /// Indexes a message just stored as `copies`; nothing for a message without copies.
    pub fn insert(&mut self, id: Arc<str>, copies: Vec<(UserId, Seq)>) {
        if copies.is_empty() {
            return;
        }
        self.bytes += cost(&id, copies.len());
        let indexed = Indexed {
            live: copies.len(),
            copies: copies.into_boxed_slice(),
        };
        // Ids are fresh UUIDs, so this never replaces anything; if it did, the old entry's
        // bytes leave with it.
        if let Some(old) = self.ids.insert(id.clone(), indexed) {
            self.bytes -= cost(&id, old.copies.len());
        }
    }

    /// One copy of `id` left its user's log (trimmed or evicted); `id` is forgotten with
    /// its last copy.
    pub fn copy_gone(&mut self, id: &str) {
        let Some(indexed) = self.ids.get_mut(id) else {
            return;
        };
        indexed.live = indexed.live.saturating_sub(1);
        if indexed.live == 0 {
            if let Some((id, gone)) = self.ids.remove_entry(id) {
                self.bytes -= cost(&id, gone.copies.len());
            }
        }
    }

    /// The copies `id` was stored as, if any is still in a log.
    pub fn copies(&self, id: &str) -> Option<&[(UserId, Seq)]> {
        self.ids.get(id).map(|i| &*i.copies)
    }

    /// Bytes the index costs.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Messages indexed.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.ids.len()
    }
}

/// Bytes one indexed id with `copies` copies costs.
fn cost(id: &str, copies: usize) -> usize {
    ID_OVERHEAD + id.len() + copies * COPY_COST
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn two_copies(index: &mut IdIndex, id: &str) {
        index.insert(Arc::from(id), vec![(u("alice"), 3), (u("bob"), 1)]);
    }

    #[test]
    fn a_message_stays_indexed_with_all_its_copies_until_the_last_one_goes() {
        let mut index = IdIndex::default();
        two_copies(&mut index, "m1");
        let all = [(u("alice"), 3), (u("bob"), 1)];
        assert_eq!(index.copies("m1"), Some(&all[..]));
        index.copy_gone("m1");
        assert_eq!(
            index.copies("m1"),
            Some(&all[..]),
            "bob's copy is still stored"
        );
        index.copy_gone("m1");
        assert_eq!(index.copies("m1"), None);
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn bytes_grow_with_each_message_and_its_copies_and_return_to_zero_when_all_go() {
        let mut index = IdIndex::default();
        two_copies(&mut index, "m1");
        let one = index.bytes();
        assert_eq!(one, ID_OVERHEAD + 2 + 2 * COPY_COST);
        index.insert(Arc::from("m2"), vec![(u("carol"), 1)]);
        assert_eq!(index.bytes(), one + ID_OVERHEAD + 2 + COPY_COST);
        for id in ["m1", "m1", "m2"] {
            index.copy_gone(id);
        }
        assert_eq!(index.bytes(), 0);
    }

    #[test]
    fn a_message_without_copies_is_not_indexed_and_unknown_ids_are_ignored() {
        let mut index = IdIndex::default();
        index.insert(Arc::from("m1"), Vec::new());
        index.copy_gone("m1");
        index.copy_gone("never");
        assert_eq!((index.len(), index.bytes()), (0, 0));
    }
}
