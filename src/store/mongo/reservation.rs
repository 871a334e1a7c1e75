//! The deciding half of seq reservation (`seqs.rs` does the I/O): per batch, which users
//! still need a block, and which block a round's read-back proves each one won. Plain
//! state, no I/O.

use std::collections::HashMap;

use mongodb::bson::raw::ValueAccessErrorKind;
use mongodb::bson::RawDocumentBuf;

use super::error::MongoError;
use crate::ids::{Seq, UserId};
use mongodb::bson::RawBsonRef;

/// Reservations a counter remembers in `l`: a round's read-back must come before this many
/// later reservations of the same user.
pub const LOG_LEN: usize = 4;

/// A user's block: its first seq and how many.
pub type Block = (Seq, u64);

/// A counter's reservation log as read back: (tag, last seq of the block), oldest first.
pub type Log = Vec<(i64, Seq)>;

/// The reservation of one batch as plain state: what each user still needs and the blocks
/// won. No I/O: `MongoStore::reserve_seqs` feeds it what the server said.
#[derive(Debug, Default)]
pub struct Reservation {
    /// Users without a block yet, each with the count it needs.
    pending: Vec<(UserId, u64)>,
    won: HashMap<UserId, Block>,
}

impl Reservation {
    /// `need`: each distinct user with its number of copies (> 0).
    pub fn new(need: Vec<(UserId, u64)>) -> Self {
        Self {
            won: HashMap::with_capacity(need.len()),
            pending: need,
        }
    }

    pub fn is_done(&self) -> bool {
        self.pending.is_empty()
    }

    /// Users still without a block, with what each needs.
    pub fn pending(&self) -> &[(UserId, u64)] {
        &self.pending
    }

    /// The pending users grouped by the count they need, smallest count first: one
    /// multi-document statement each.
    pub fn by_count(&self) -> Vec<(u64, Vec<&UserId>)> {
        let mut groups: HashMap<u64, Vec<&UserId>> = HashMap::new();
        for (user, n) in &self.pending {
            groups.entry(*n).or_default().push(user);
        }
        let mut groups: Vec<_> = groups.into_iter().collect();
        groups.sort_unstable_by_key(|(n, _)| *n);
        groups
    }

    /// Settles the round tagged `tag` from the logs read back (a pending user absent from
    /// `logs` has no counter): a user whose log holds the tag won the block ending at its
    /// newest such entry. Answers the users to create a counter for, with their counts.
    pub fn settle_round(&mut self, tag: i64, logs: &HashMap<String, Log>) -> Vec<(UserId, u64)> {
        let mut create = Vec::new();
        let won = &mut self.won;
        self.pending.retain(|(user, n)| {
            let Some(log) = logs.get(user.as_str()) else {
                create.push((user.clone(), *n));
                return true;
            };
            let last = log.iter().rev().find(|(t, _)| *t == tag).map(|(_, s)| *s);
            match last
                .and_then(|s| s.checked_sub(n - 1))
                .filter(|first| *first > 0)
            {
                Some(first) => {
                    won.insert(user.clone(), (first, *n));
                    false
                }
                // Pushed out of the log (or created after the update ran): again.
                None => true,
            }
        });
        create
    }

    /// The counters of `created` were inserted at their counts, except those at the
    /// indices `dups` (another append created them first): blocks from seq 1.
    pub fn settle_created(&mut self, created: &[(UserId, u64)], dups: &[usize]) {
        let mut lost = vec![false; created.len()];
        for &i in dups {
            if let Some(l) = lost.get_mut(i) {
                *l = true;
            }
        }
        for ((user, n), lost) in created.iter().zip(lost) {
            if !lost {
                self.won.insert(user.clone(), (1, *n));
            }
        }
        let won = &self.won;
        self.pending.retain(|(user, _)| !won.contains_key(user));
    }

    /// `user`'s counter was incremented by its `n` to `last`.
    pub fn incremented(&mut self, user: &UserId, last: Seq) {
        if let Some(k) = self.pending.iter().position(|(u, _)| u == user) {
            let (user, n) = self.pending.swap_remove(k);
            self.won.insert(user, (last + 1 - n, n));
        }
    }

    /// The blocks, once [`is_done`](Self::is_done).
    pub fn into_blocks(self) -> HashMap<UserId, Block> {
        self.won
    }
}

/// A counter's `l`: its `[tag, s, tag, s, …]` pairs in order; none when the field is absent.
pub fn parse_log(d: &RawDocumentBuf, op: &'static str) -> Result<Log, MongoError> {
    let l = match d.get_array("l") {
        Ok(l) => l,
        Err(e) if matches!(e.kind, ValueAccessErrorKind::NotPresent) => return Ok(Vec::new()),
        Err(_) => return Err(MongoError::reply(op, "`l` is not an array")),
    };
    let number = |v: Option<Result<RawBsonRef<'_>, _>>| match v {
        Some(Ok(RawBsonRef::Int64(n))) => Some(n),
        Some(Ok(RawBsonRef::Int32(n))) => Some(n.into()),
        _ => None,
    };
    let mut log = Vec::new();
    let mut items = l.into_iter();
    while let Some(tag) = items.next() {
        let bad = || MongoError::reply(op, "a reservation is not a (tag, seq) pair of numbers");
        let tag = number(Some(tag)).ok_or_else(bad)?;
        let last = number(items.next())
            .and_then(|s| u64::try_from(s).ok())
            .ok_or_else(bad)?;
        log.push((tag, last));
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use mongodb::bson::rawdoc;

    use super::*;

    const TAG: i64 = 0x5eed;

    fn user(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn reservation(need: &[(&str, u64)]) -> Reservation {
        Reservation::new(need.iter().map(|(u, n)| (user(u), *n)).collect())
    }

    fn logs(entries: &[(&str, &[(i64, Seq)])]) -> HashMap<String, Log> {
        entries
            .iter()
            .map(|(u, log)| (u.to_string(), log.to_vec()))
            .collect()
    }

    #[test]
    fn users_are_grouped_by_the_count_they_need_smallest_first() {
        let res = reservation(&[("a", 2), ("b", 1), ("c", 2), ("d", 1)]);
        let mut groups = res.by_count();
        for (_, users) in &mut groups {
            users.sort();
        }
        let (a, b, c, d) = (user("a"), user("b"), user("c"), user("d"));
        assert_eq!(groups, [(1, vec![&b, &d]), (2, vec![&a, &c])]);
    }

    #[test]
    fn a_user_whose_log_holds_the_tag_wins_the_block_ending_at_that_entry() {
        let mut res = reservation(&[("a", 3), ("b", 1)]);
        // Another append reserved after this round: its entry is newer, `seq` is past ours.
        let found = logs(&[("a", &[(1, 4), (TAG, 7), (2, 9)]), ("b", &[(TAG, 1)])]);
        assert!(res.settle_round(TAG, &found).is_empty());
        assert!(res.is_done());
        let blocks = res.into_blocks();
        assert_eq!(blocks[&user("a")], (5, 3));
        assert_eq!(blocks[&user("b")], (1, 1));
    }

    #[test]
    fn a_tag_seen_twice_after_a_retried_command_takes_the_newest_block() {
        let mut res = reservation(&[("a", 2)]);
        res.settle_round(TAG, &logs(&[("a", &[(TAG, 2), (TAG, 4)])]));
        assert_eq!(res.into_blocks()[&user("a")], (3, 2));
    }

    #[test]
    fn a_user_without_a_counter_is_created_and_one_created_meanwhile_goes_round_again() {
        let mut res = reservation(&[("a", 2), ("b", 1)]);
        let create = res.settle_round(TAG, &logs(&[]));
        assert_eq!(create.len(), 2);
        let b = create.iter().position(|(u, _)| *u == user("b")).unwrap();
        res.settle_created(&create, &[b]);
        assert_eq!(res.pending(), [(user("b"), 1)]);
        let next = 0x7a9;
        assert!(res
            .settle_round(next, &logs(&[("b", &[(next, 6)])]))
            .is_empty());
        let blocks = res.into_blocks();
        assert_eq!(blocks[&user("a")], (1, 2));
        assert_eq!(blocks[&user("b")], (6, 1));
    }

    #[test]
    fn a_user_whose_entry_left_the_log_stays_pending() {
        let mut res = reservation(&[("a", 1)]);
        let pushed_out: Vec<(i64, Seq)> = (0..LOG_LEN as i64).map(|t| (t + 100, 10)).collect();
        assert!(res
            .settle_round(TAG, &logs(&[("a", &pushed_out)]))
            .is_empty());
        assert_eq!(res.pending(), [(user("a"), 1)]);
    }

    #[test]
    fn an_entry_too_small_for_the_block_is_not_a_block() {
        let mut res = reservation(&[("a", 3)]);
        res.settle_round(TAG, &logs(&[("a", &[(TAG, 2)])]));
        assert!(!res.is_done());
    }

    #[test]
    fn an_increment_gives_the_block_ending_at_the_new_counter_value() {
        let mut res = reservation(&[("a", 4)]);
        res.incremented(&user("a"), 20);
        assert!(res.is_done());
        assert_eq!(res.into_blocks()[&user("a")], (17, 4));
    }

    #[test]
    fn a_log_is_read_pair_by_pair_in_order_and_a_counter_without_one_has_an_empty_log() {
        let d = rawdoc! {"_id": "a", "l": [5_i64, 3_i64, 6_i64, 4_i32]};
        assert_eq!(parse_log(&d, "t").unwrap(), [(5, 3), (6, 4)]);
        assert!(parse_log(&rawdoc! {"_id": "a"}, "t").unwrap().is_empty());
        assert!(parse_log(&rawdoc! {"_id": "a", "l": 1}, "t").is_err());
        assert!(
            parse_log(&rawdoc! {"_id": "a", "l": [5_i64]}, "t").is_err(),
            "half a pair"
        );
        assert!(parse_log(&rawdoc! {"_id": "a", "l": [5_i64, -1_i64]}, "t").is_err());
        assert!(parse_log(&rawdoc! {"_id": "a", "l": [{"t": 5_i64, "s": 3_i64}]}, "t").is_err());
    }
}
