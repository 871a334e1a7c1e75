//! How the hub is split across threads: each user belongs to one shard (a hash of its id),
//! and so do its sessions, which run on their shard's thread. The choices are plain
//! functions: which shard a user is on, how a batch splits by shard, and how a drain's
//! pace and a broadcast's backlog weight divide among shards.

use std::hash::{Hash, Hasher};

use super::DrainPolicy;
use crate::ids::UserId;

/// The shard `user` belongs to, out of `n` (stable for the life of the process).
pub fn shard_of(user: &UserId, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    // SipHash with fixed keys: the same user always lands on the same shard.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    user.as_str().hash(&mut h);
    (h.finish() % n as u64) as usize
}

/// `items` split by the shard of `user_of(item)`, keeping their order within each shard.
pub fn split<T>(items: Vec<T>, n: usize, user_of: impl Fn(&T) -> &UserId) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = (0..n).map(|_| Vec::new()).collect();
    if n == 1 {
        out[0] = items;
        return out;
    }
    // All on one shard (one recipient, say): the batch moves there whole, no copy.
    let first = items.first().map(|i| shard_of(user_of(i), n));
    if let Some(s) = first.filter(|&s| items[1..].iter().all(|i| shard_of(user_of(i), n) == s)) {
        out[s] = items;
        return out;
    }
    for item in items {
        let s = shard_of(user_of(&item), n);
        out[s].push(item);
    }
    out
}

/// Shard `i`'s part of a drain over `n` shards: the close rate divides (rounded up, so the
/// node as a whole never goes slower than configured); spread and jitter stay.
pub fn drain_share(policy: &DrainPolicy, n: usize) -> DrainPolicy {
    DrainPolicy {
        close_rate: policy.close_rate.div_ceil(n.max(1) as u32),
        ..*policy
    }
}

/// Shard `i`'s part of a broadcast's backlog weight `total` over `n` shards (the parts add
/// up to `total`).
pub fn weight_share(total: u64, i: usize, n: usize) -> u64 {
    let n = n.max(1) as u64;
    total / n + u64::from((i as u64) < total % n)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn user(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    #[test]
    fn a_user_always_lands_on_the_same_shard_and_users_spread_over_all_shards() {
        let mut seen = [0usize; 4];
        for i in 0..1000 {
            let u = user(&format!("user-{i}"));
            let s = shard_of(&u, 4);
            assert_eq!(s, shard_of(&u, 4));
            seen[s] += 1;
        }
        assert!(seen.iter().all(|&c| c > 150), "uneven spread: {seen:?}");
        assert_eq!(shard_of(&user("x"), 1), 0);
    }

    #[test]
    fn a_split_keeps_every_item_once_in_its_order_on_its_users_shard() {
        let items: Vec<(UserId, u32)> = (0..200)
            .map(|i| (user(&format!("u{}", i % 7)), i))
            .collect();
        let parts = split(items.clone(), 3, |(u, _)| u);
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 200);
        for (s, part) in parts.iter().enumerate() {
            assert!(part.iter().all(|(u, _)| shard_of(u, 3) == s));
            assert!(part.windows(2).all(|w| w[0].1 < w[1].1), "order kept");
        }
        assert_eq!(split(items.clone(), 1, |(u, _)| u)[0], items);
        let one: Vec<(UserId, u32)> = (0..5).map(|i| (user("solo"), i)).collect();
        let parts = split(one.clone(), 3, |(u, _)| u);
        assert_eq!(
            parts[shard_of(&user("solo"), 3)],
            one,
            "one shard's batch kept whole"
        );
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 5);
        assert!(split(Vec::<(UserId, u32)>::new(), 3, |(u, _)| u)
            .iter()
            .all(Vec::is_empty));
    }

    #[test]
    fn drain_rates_divide_rounding_up_and_weights_add_up() {
        let p = DrainPolicy {
            close_rate: 1000,
            max_spread: Duration::from_secs(10),
            jitter_ms: 500,
        };
        assert_eq!(drain_share(&p, 3).close_rate, 334);
        assert_eq!(drain_share(&p, 3).max_spread, p.max_spread);
        assert_eq!(drain_share(&DrainPolicy::IMMEDIATE, 2).close_rate, 0);
        for (total, n) in [(10_u64, 3_usize), (1, 4), (0, 2), (10_000, 16)] {
            let parts: Vec<u64> = (0..n).map(|i| weight_share(total, i, n)).collect();
            assert_eq!(parts.iter().sum::<u64>(), total);
            assert!(parts.iter().max().unwrap() - parts.iter().min().unwrap() <= 1);
        }
    }
}
