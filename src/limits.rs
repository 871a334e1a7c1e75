//! Admission limits as plain logic, without I/O: token buckets keyed by source address or
//! API key ([`RateLimiter`]), and the count of sessions per user ([`UserSessions`]), whose
//! [`SessionSlot`] a session holds for its lifetime. The HTTP layer asks them and answers
//! 429 with `Retry-After`; the counters say how often.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::ids::UserId;

/// Tokens that refill at `rate` per second up to `burst`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets per key; a rate of 0 admits everything.
pub struct RateLimiter<K> {
    rate: f64,
    burst: f64,
    /// Most keys tracked; past it buckets that have refilled are forgotten, and if none has,
    /// a new key is admitted untracked (failing open rather than growing without bound).
    max_keys: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `rate` per second, bursts of `burst` (at least 1 when `rate` > 0).
    pub fn new(rate: f64, burst: f64, max_keys: usize) -> Self {
        Self {
            rate,
            burst: burst.max(1.0),
            max_keys,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.rate > 0.0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, Bucket>> {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `n` tokens for `key` at `now`; when there are too few, takes none and answers
    /// how long until there will be enough.
    pub fn check(&self, key: &K, n: u64, now: Instant) -> Result<(), Duration> {
        if !self.is_enabled() {
            return Ok(());
        }
        let n = n as f64;
        let mut map = self.lock();
        if !map.contains_key(key) && map.len() >= self.max_keys {
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, b| refilled(b, rate, burst, now) < burst);
            if map.len() >= self.max_keys {
                return Ok(());
            }
        }
        let b = map.entry(key.clone()).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        b.tokens = refilled(b, self.rate, self.burst, now);
        b.last = now;
        // A full bucket admits even more than a burst (a large batch), going into debt that
        // later requests wait out: the long-run rate holds either way.
        if b.tokens >= n || b.tokens >= self.burst {
            b.tokens -= n;
            return Ok(());
        }
        let missing = n.min(self.burst) - b.tokens;
        Err(Duration::from_secs_f64(missing / self.rate))
    }
}

fn refilled(b: &Bucket, rate: f64, burst: f64, now: Instant) -> f64 {
    let secs = now.saturating_duration_since(b.last).as_secs_f64();
    (b.tokens + secs * rate).min(burst)
}

/// Whole seconds for a `Retry-After` header (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// Sessions per user on this node, capped.
pub struct UserSessions {
    max: usize,
    counts: Mutex<HashMap<UserId, usize>>,
}

/// A user's place among its sessions; given back when dropped.
pub struct SessionSlot {
    owner: Arc<UserSessions>,
    user: UserId,
}

impl UserSessions {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<UserId, usize>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for one more session of `user`, unless it holds `max` already.
    pub fn acquire(self: &Arc<Self>, user: &UserId) -> Option<SessionSlot> {
        self.acquire_within(user, self.max)
    }

    /// [`Self::acquire`] with a lower cap for this user (from its auth answer); the node's
    /// cap still applies.
    pub fn acquire_within(self: &Arc<Self>, user: &UserId, cap: usize) -> Option<SessionSlot> {
        let mut counts = self.lock();
        let n = counts.entry(user.clone()).or_insert(0);
        if *n >= self.max.min(cap) {
            return None;
        }
        *n += 1;
        Some(SessionSlot {
            owner: self.clone(),
            user: user.clone(),
        })
    }

    /// Sessions `user` holds now.
    pub fn count(&self, user: &UserId) -> usize {
        self.lock().get(user).copied().unwrap_or(0)
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut counts = self.owner.lock();
        if let Some(n) = counts.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_admits_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let l = RateLimiter::new(10.0, 5.0, 100);
        for _ in 0..5 {
            assert!(l.check(&"k", 1, t0).is_ok());
        }
        let wait = l.check(&"k", 1, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        assert!(l.check(&"k", 1, t0 + Duration::from_millis(100)).is_ok());
        assert!(l.check(&"k", 1, t0 + Duration::from_millis(100)).is_err());
        assert!(l.check(&"other", 1, t0).is_ok(), "keys are independent");
    }

    #[test]
    fn a_request_larger_than_the_burst_passes_on_a_full_bucket_and_the_debt_is_waited_out() {
        let t0 = Instant::now();
        let l = RateLimiter::new(100.0, 50.0, 10);
        assert!(l.check(&1, 80, t0).is_ok());
        let wait = l.check(&1, 1, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.31).abs() < 1e-9, "{wait:?}");
        assert!(l.check(&1, 80, t0 + Duration::from_millis(400)).is_err());
        assert!(l.check(&1, 80, t0 + Duration::from_millis(800)).is_ok());
    }

    #[test]
    fn a_rate_of_zero_admits_everything() {
        let l = RateLimiter::new(0.0, 0.0, 1);
        assert!((0..1000).all(|i| l.check(&i, 1_000_000, Instant::now()).is_ok()));
    }

    #[test]
    fn past_max_keys_refilled_buckets_are_forgotten_and_new_keys_fail_open() {
        let t0 = Instant::now();
        let l = RateLimiter::new(1.0, 1.0, 2);
        assert!(l.check(&1, 1, t0).is_ok());
        assert!(l.check(&2, 1, t0).is_ok());
        // Both buckets empty: key 3 is admitted untracked.
        assert!(l.check(&3, 1, t0).is_ok());
        assert!(l.check(&3, 1, t0).is_ok());
        assert!(l.check(&1, 1, t0).is_err(), "tracked keys keep their limit");
        // Two seconds on, both refilled: they are forgotten and key 3 is tracked.
        let t2 = t0 + Duration::from_secs(2);
        assert!(l.check(&3, 1, t2).is_ok());
        assert!(l.check(&3, 1, t2).is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
    }

    #[test]
    fn a_user_holds_at_most_max_sessions_and_dropped_slots_are_given_back() {
        let s = UserSessions::new(2);
        let u = UserId::parse("u").unwrap();
        let a = s.acquire(&u).unwrap();
        let b = s.acquire(&u).unwrap();
        assert!(s.acquire(&u).is_none());
        assert!(s.acquire(&UserId::parse("v").unwrap()).is_some());
        drop(a);
        assert_eq!(s.count(&u), 1);
        let _c = s.acquire(&u).unwrap();
        drop(b);
        assert_eq!(s.count(&u), 1);
    }
}
