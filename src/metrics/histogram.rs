//! A lock-free latency histogram: power-of-two buckets from 1 µs to ~33 s, bumped with two
//! relaxed atomics per observation, read as a [`Snapshot`] from which Prometheus buckets and
//! windowed quantiles (the dashboard's p50/p99) are computed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Finite buckets: bucket `i` holds observations in `(2^(i-1), 2^i]` µs (bucket 0: ≤ 1 µs).
pub const FINITE: usize = 26;
/// All buckets: the finite ones and the overflow (`+Inf`).
pub const BUCKETS: usize = FINITE + 1;

/// Observations in µs, by power-of-two bucket.
#[derive(Debug)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

/// The bucket an observation of `us` microseconds falls in.
pub fn bucket_of(us: u64) -> usize {
    if us <= 1 {
        return 0;
    }
    ((64 - (us - 1).leading_zeros()) as usize).min(FINITE)
}

/// Upper bound of bucket `i` in seconds (`f64::MAX` for the overflow bucket, which the
/// Prometheus encoder writes as `+Inf`).
pub fn upper_bound_s(i: usize) -> f64 {
    if i >= FINITE {
        f64::MAX
    } else {
        (1u64 << i) as f64 / 1e6
    }
}

impl Histogram {
    /// Records one observation of `us` microseconds.
    pub fn record_us(&self, us: u64) {
        self.counts[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn record(&self, d: Duration) {
        self.record_us(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

/// A histogram's counts at one moment (or the difference of two moments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub counts: [u64; BUCKETS],
    pub sum_us: u64,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            counts: [0; BUCKETS],
            sum_us: 0,
        }
    }
}

impl Snapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// What was observed between `earlier` and `self`.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot {
            counts: std::array::from_fn(|i| self.counts[i].saturating_sub(earlier.counts[i])),
            sum_us: self.sum_us.saturating_sub(earlier.sum_us),
        }
    }

    /// Adds `other`'s observations to these.
    pub fn add(&mut self, other: &Snapshot) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.sum_us += other.sum_us;
    }

    /// The `q` quantile (0..=1) in seconds, interpolated linearly inside its bucket; `None`
    /// when nothing was observed. An overflow observation reads as the last finite bound.
    pub fn quantile_s(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            if (seen + c) as f64 >= rank {
                if i >= FINITE {
                    return Some(upper_bound_s(FINITE - 1));
                }
                let lower = if i == 0 { 0.0 } else { upper_bound_s(i - 1) };
                let upper = upper_bound_s(i);
                let within = (rank - seen as f64) / c as f64;
                return Some(lower + (upper - lower) * within);
            }
            seen += c;
        }
        Some(upper_bound_s(FINITE - 1))
    }

    /// Prometheus buckets: (upper bound in seconds, count in that bucket alone).
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        (0..BUCKETS)
            .map(|i| (upper_bound_s(i), self.counts[i]))
            .collect()
    }

    pub fn sum_s(&self) -> f64 {
        self.sum_us as f64 / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_power_of_two_bucket_that_bounds_them() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 0);
        assert_eq!(bucket_of(2), 1);
        assert_eq!(bucket_of(3), 2);
        assert_eq!(bucket_of(4), 2);
        assert_eq!(bucket_of(5), 3);
        assert_eq!(bucket_of(1 << 20), 20);
        assert_eq!(bucket_of((1 << 20) + 1), 21);
        assert_eq!(bucket_of(u64::MAX), FINITE);
        for us in [1u64, 7, 100, 999, 65_000, 3_000_000] {
            let b = bucket_of(us);
            assert!(us as f64 / 1e6 <= upper_bound_s(b));
            if b > 0 {
                assert!(us as f64 / 1e6 > upper_bound_s(b - 1));
            }
        }
    }

    #[test]
    fn quantiles_of_a_window_come_from_the_difference_of_two_snapshots() {
        let h = Histogram::default();
        for _ in 0..1000 {
            h.record_us(50_000); // old traffic: 50 ms
        }
        let before = h.snapshot();
        for _ in 0..99 {
            h.record_us(1_000); // 1 ms
        }
        h.record_us(400_000); // one at 400 ms
        let window = h.snapshot().since(&before);
        assert_eq!(window.count(), 100);
        let p50 = window.quantile_s(0.5).unwrap();
        assert!(p50 > 0.000_5 && p50 <= 0.001_024, "{p50}");
        let p99 = window.quantile_s(0.99).unwrap();
        assert!(p99 <= 0.001_024, "{p99}");
        let max = window.quantile_s(1.0).unwrap();
        assert!(max > 0.262 && max <= 0.525, "{max}");
        assert_eq!(window.sum_us, 99 * 1_000 + 400_000);
        assert_eq!(Snapshot::default().quantile_s(0.5), None);
    }

    #[test]
    fn overflow_observations_count_and_read_as_the_last_finite_bound() {
        let h = Histogram::default();
        h.record(Duration::from_secs(3_600));
        let s = h.snapshot();
        assert_eq!(s.counts[FINITE], 1);
        assert_eq!(s.quantile_s(0.5), Some(upper_bound_s(FINITE - 1)));
        assert_eq!(s.buckets().last().unwrap().0, f64::MAX);
    }
}
