//! Verified tokens, kept by the SHA-256 of the token (never the token itself) until the
//! earlier of their expiry and the cache's own time limit; bounded in entries, dropping the
//! soonest to expire first. Plain logic on a clock the caller passes in.

use std::collections::{BTreeSet, HashMap};

use sha2::{Digest, Sha256};

use super::Identity;

/// The key a token is cached under.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Debug)]
pub struct TokenCache {
    max: usize,
    entries: HashMap<[u8; 32], (Identity, u64)>,
    /// (valid until, key): the order entries leave in.
    by_expiry: BTreeSet<(u64, [u8; 32])>,
}

impl TokenCache {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            entries: HashMap::new(),
            by_expiry: BTreeSet::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The identity cached for `key`, while `now_s` is before its end.
    pub fn get(&mut self, key: &[u8; 32], now_s: u64) -> Option<Identity> {
        let (id, until) = self.entries.get(key)?;
        if now_s < *until {
            return Some(id.clone());
        }
        let until = *until;
        self.entries.remove(key);
        self.by_expiry.remove(&(until, *key));
        None
    }

    /// Keeps `id` for `key` until `until_s` (exclusive); past the bound the entries that
    /// end soonest (the expired ones first) make room.
    pub fn insert(&mut self, key: [u8; 32], id: Identity, until_s: u64) {
        if self.max == 0 {
            return;
        }
        if let Some((_, old)) = self.entries.remove(&key) {
            self.by_expiry.remove(&(old, key));
        }
        while self.entries.len() >= self.max {
            let Some(first) = self.by_expiry.pop_first() else {
                break;
            };
            self.entries.remove(&first.1);
        }
        self.by_expiry.insert((until_s, key));
        self.entries.insert(key, (id, until_s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::UserId;

    fn id(user: &str) -> Identity {
        Identity {
            user: UserId::parse(user).unwrap(),
            device: None,
            expires_at: 1_000,
            max_sessions: None,
        }
    }

    #[test]
    fn entries_last_until_their_end_and_no_longer() {
        let mut c = TokenCache::new(10);
        let k = token_hash("opaque-token");
        c.insert(k, id("ann"), 100);
        assert_eq!(c.get(&k, 99).unwrap().user.as_str(), "ann");
        assert!(c.get(&k, 100).is_none(), "expired with the token");
        assert!(c.is_empty(), "an expired entry is dropped when seen");
    }

    #[test]
    fn the_cache_is_bounded_and_drops_the_soonest_to_end() {
        let mut c = TokenCache::new(3);
        for (i, until) in [(0, 50), (1, 10), (2, 90), (3, 70)] {
            c.insert(token_hash(&format!("t{i}")), id("u"), until);
        }
        assert_eq!(c.len(), 3);
        assert!(
            c.get(&token_hash("t1"), 0).is_none(),
            "ended soonest: dropped"
        );
        for t in ["t0", "t2", "t3"] {
            assert!(c.get(&token_hash(t), 0).is_some(), "{t}");
        }
    }

    #[test]
    fn tokens_are_kept_by_hash_only() {
        let mut c = TokenCache::new(4);
        c.insert(token_hash("secret-session-token"), id("u"), 10);
        let dump = format!("{c:?}");
        assert!(!dump.contains("secret-session-token"));
        assert_ne!(token_hash("a"), token_hash("b"));
        assert_eq!(token_hash("a"), token_hash("a"));
    }
}
