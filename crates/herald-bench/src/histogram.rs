//! Log-linear latency histogram in microseconds: bounded relative error, mergeable across
//! worker processes, and sent over the wire as sparse `[bucket, count]` pairs.
//!
//! Values below [`SUB`] get a bucket each; above that every power of two is split into
//! [`SUB`] equal buckets, so a bucket is at most 1/[`SUB`] (~3 %) of its value wide whatever
//! the magnitude. Percentiles report the highest value of the bucket they fall in (clamped
//! to the exact min/max), so they never understate latency.

use serde::{Deserialize, Serialize};

/// Bits of the linear part of a bucket index.
const SUB_BITS: u32 = 5;
/// Buckets per power of two (and the number of exact buckets at the bottom).
pub const SUB: u64 = 1 << SUB_BITS;
/// Buckets needed to cover all of `u64`.
const BUCKETS: usize = ((64 - SUB_BITS + 1) as usize) << SUB_BITS;

/// Bucket holding `v`.
fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    (((shift + 1) as usize) << SUB_BITS) + ((v >> shift) - SUB) as usize
}

/// Lowest value of bucket `i`.
#[cfg(test)]
fn lowest(i: usize) -> u64 {
    if (i as u64) < SUB {
        return i as u64;
    }
    let shift = (i >> SUB_BITS) as u32 - 1;
    let mantissa = (i as u64 & (SUB - 1)) + SUB;
    mantissa << shift
}

/// Highest value of bucket `i` (inclusive).
fn highest(i: usize) -> u64 {
    if (i as u64) < SUB {
        return i as u64;
    }
    let shift = (i >> SUB_BITS) as u32 - 1;
    let mantissa = (i as u64 & (SUB - 1)) + SUB;
    // The very last bucket ends at u64::MAX: (2^6 << 58) wraps to 0, and 0 - 1 wraps back.
    ((mantissa + 1) << shift).wrapping_sub(1)
}

/// Counts of recorded values by bucket, plus exact count, sum, min and max.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Wire", into = "Wire")]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: u64,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    /// Records one value.
    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.count += 1;
        self.sum = self.sum.saturating_add(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Adds every value recorded in `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum = self.sum.saturating_add(other.sum);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Largest recorded value, if any.
    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    /// Smallest recorded value, if any.
    pub fn min(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min)
    }

    /// Arithmetic mean, if anything was recorded.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// The value below or at which a fraction `q` (0..=1) of the recorded values lie, as
    /// the top of its bucket clamped to the exact min and max; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(highest(i).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

/// Sparse wire form: only non-empty buckets, as `[index, count]`.
#[derive(Serialize, Deserialize)]
struct Wire {
    buckets: Vec<(usize, u64)>,
    count: u64,
    sum: u64,
    min: u64,
    max: u64,
}

impl From<Histogram> for Wire {
    fn from(h: Histogram) -> Self {
        Wire {
            buckets: h
                .counts
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0)
                .map(|(i, &c)| (i, c))
                .collect(),
            count: h.count,
            sum: h.sum,
            min: h.min,
            max: h.max,
        }
    }
}

impl TryFrom<Wire> for Histogram {
    type Error = String;

    fn try_from(w: Wire) -> Result<Self, String> {
        let mut h = Histogram::new();
        let mut total = 0u64;
        for (i, c) in w.buckets {
            if i >= BUCKETS {
                return Err(format!("histogram bucket {i} is out of range"));
            }
            h.counts[i] += c;
            total += c;
        }
        if total != w.count {
            return Err(format!(
                "histogram buckets hold {total} values but count says {}",
                w.count
            ));
        }
        h.count = w.count;
        h.sum = w.sum;
        h.min = w.min;
        h.max = w.max;
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<u64> {
        let mut v: Vec<u64> = (0..200).collect();
        v.extend([
            255,
            256,
            1000,
            1023,
            1024,
            99_999,
            1 << 40,
            u64::MAX - 1,
            u64::MAX,
        ]);
        v
    }

    #[test]
    fn every_value_falls_in_a_bucket_whose_bounds_contain_it() {
        for v in samples() {
            let i = index(v);
            assert!(i < BUCKETS, "{v} -> bucket {i}");
            assert!(lowest(i) <= v && v <= highest(i), "{v} not in bucket {i}");
        }
    }

    #[test]
    fn buckets_tile_the_value_range_without_gaps() {
        for i in 0..BUCKETS - 1 {
            assert_eq!(highest(i) + 1, lowest(i + 1), "gap after bucket {i}");
        }
        assert_eq!(highest(BUCKETS - 1), u64::MAX);
    }

    #[test]
    fn small_values_are_exact_and_large_ones_within_three_percent() {
        for v in 0..SUB {
            assert_eq!(lowest(index(v)), highest(index(v)));
        }
        for v in [100u64, 1_000, 12_345, 1_000_000, 987_654_321] {
            let i = index(v);
            let width = highest(i) - lowest(i) + 1;
            assert!(
                width as f64 / v as f64 <= 1.0 / SUB as f64,
                "{v}: width {width}"
            );
        }
    }

    #[test]
    fn percentiles_of_uniform_values_are_within_bucket_error() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        for (q, exact) in [(0.5, 5_000.0), (0.9, 9_000.0), (0.99, 9_900.0)] {
            // unwrap: the histogram is not empty
            let got = h.quantile(q).unwrap() as f64;
            assert!(
                got >= exact && got <= exact * 1.04,
                "p{q}: {got} vs {exact}"
            );
        }
        assert_eq!(h.quantile(1.0), Some(10_000));
        assert_eq!(h.quantile(0.0), Some(1));
        assert_eq!(h.max(), Some(10_000));
        assert_eq!(h.mean(), Some(5_000.5));
    }

    #[test]
    fn a_single_value_is_reported_exactly_at_every_percentile() {
        let mut h = Histogram::new();
        h.record(777_777);
        for q in [0.0, 0.5, 0.99, 1.0] {
            assert_eq!(h.quantile(q), Some(777_777));
        }
    }

    #[test]
    fn empty_histogram_has_no_percentiles() {
        let h = Histogram::new();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.max(), None);
        assert_eq!(h.min(), None);
        assert_eq!(h.mean(), None);
    }

    #[test]
    fn merging_equals_recording_everything_in_one_histogram() {
        let (mut a, mut b, mut all) = (Histogram::new(), Histogram::new(), Histogram::new());
        for v in samples() {
            a.record(v);
            all.record(v);
        }
        for v in (0..5_000u64).map(|x| x * 37) {
            b.record(v);
            all.record(v);
        }
        a.merge(&b);
        assert_eq!(a, all);
        a.merge(&Histogram::new());
        assert_eq!(a, all, "merging an empty histogram changes nothing");
    }

    #[test]
    fn wire_form_round_trips_and_is_sparse() {
        let mut h = Histogram::new();
        for v in [3u64, 3, 500, 70_000] {
            h.record(v);
        }
        // unwrap: serializing plain numbers cannot fail
        let text = serde_json::to_string(&h).unwrap();
        assert!(text.len() < 120, "not sparse: {text}");
        let back: Histogram = serde_json::from_str(&text).unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn wire_form_with_bad_buckets_is_refused() {
        let out_of_range = r#"{"buckets":[[999999,1]],"count":1,"sum":1,"min":1,"max":1}"#;
        assert!(serde_json::from_str::<Histogram>(out_of_range).is_err());
        let wrong_count = r#"{"buckets":[[1,1]],"count":2,"sum":1,"min":1,"max":1}"#;
        assert!(serde_json::from_str::<Histogram>(wrong_count).is_err());
    }
}
