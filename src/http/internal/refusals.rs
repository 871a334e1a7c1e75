//! What happens to a refused internal request besides its answer: it is counted
//! (`internal_refused`) and logged, at a bounded rate. A peer with a wrong secret or a
//! scanner on the internal port must not be able to flood the log: [`LogLimiter`] decides
//! (plain state, the caller passes the time), [`Refusals`] counts and writes the lines.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::metrics::Counters;

/// At most one refusal line per this many ms; the ones in between are only counted.
pub const REFUSAL_LOG_INTERVAL_MS: u64 = 10_000;

/// What to do with one occurrence of a rate-limited event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogDecision {
    /// Write a line, saying how many occurrences were suppressed since the previous one.
    Log { suppressed: u64 },
    /// Count it, write nothing.
    Suppress,
}

/// Rate limit for one log line: the first occurrence is logged, then at most one per
/// interval, carrying the number suppressed in between. The count of a quiet tail (events
/// after the last line and none later) is never written; the node's counter still has it.
#[derive(Debug, Clone)]
pub struct LogLimiter {
    interval_ms: u64,
    /// When the last line was written; `None` before the first.
    last_logged_ms: Option<u64>,
    /// Occurrences since that line.
    suppressed: u64,
}

impl LogLimiter {
    pub const fn new(interval_ms: u64) -> Self {
        Self {
            interval_ms,
            last_logged_ms: None,
            suppressed: 0,
        }
    }

    /// One occurrence at `now_ms`.
    pub fn on_event(&mut self, now_ms: u64) -> LogDecision {
        match self.last_logged_ms {
            Some(last) if now_ms.saturating_sub(last) < self.interval_ms => {
                self.suppressed += 1;
                LogDecision::Suppress
            }
            _ => {
                self.last_logged_ms = Some(now_ms);
                LogDecision::Log {
                    suppressed: std::mem::take(&mut self.suppressed),
                }
            }
        }
    }
}

/// Counts every refusal and logs them through a [`LogLimiter`].
pub struct Refusals {
    counters: Arc<Counters>,
    /// A std Mutex: nothing awaits while it is held.
    limiter: Mutex<LogLimiter>,
    /// The limiter's time origin: a monotonic clock, so a wall-clock step can't silence it.
    started: Instant,
}

impl Refusals {
    pub fn new(counters: Arc<Counters>) -> Self {
        Self {
            counters,
            limiter: Mutex::new(LogLimiter::new(REFUSAL_LOG_INTERVAL_MS)),
            started: Instant::now(),
        }
    }

    /// Records one refusal of a request from `peer` for `reason`.
    pub fn record(&self, peer: Option<SocketAddr>, reason: &dyn std::fmt::Display) {
        Counters::add(&self.counters.internal_refused, 1);
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let decision = self
            .limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .on_event(now);
        if let LogDecision::Log { suppressed } = decision {
            // `suppressed`: refusals since the previous line that were counted, not logged.
            tracing::warn!(peer = ?peer, reason = %reason, suppressed, "internal request refused");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_refusal_is_logged_then_one_line_per_interval_with_the_suppressed_count() {
        let mut l = LogLimiter::new(1000);
        assert_eq!(l.on_event(5000), LogDecision::Log { suppressed: 0 });
        for t in [5000, 5001, 5500, 5999] {
            assert_eq!(l.on_event(t), LogDecision::Suppress, "at {t}");
        }
        assert_eq!(l.on_event(6000), LogDecision::Log { suppressed: 4 });
        assert_eq!(l.on_event(6999), LogDecision::Suppress);
        assert_eq!(l.on_event(7000), LogDecision::Log { suppressed: 1 });
    }

    #[test]
    fn after_a_quiet_spell_the_next_refusal_is_logged_at_once() {
        let mut l = LogLimiter::new(1000);
        assert_eq!(l.on_event(0), LogDecision::Log { suppressed: 0 });
        assert_eq!(l.on_event(60_000), LogDecision::Log { suppressed: 0 });
    }

    #[test]
    fn an_earlier_time_than_the_last_line_is_suppressed_not_underflowed() {
        let mut l = LogLimiter::new(1000);
        assert_eq!(l.on_event(5000), LogDecision::Log { suppressed: 0 });
        assert_eq!(l.on_event(100), LogDecision::Suppress);
        assert_eq!(l.on_event(6000), LogDecision::Log { suppressed: 1 });
    }

    #[test]
    fn every_refusal_is_counted_whether_logged_or_not() {
        let counters = Arc::new(Counters::default());
        let r = Refusals::new(counters.clone());
        for _ in 0..5 {
            r.record(None, &"bad signature");
        }
        assert_eq!(Counters::get(&counters.internal_refused), 5);
    }
}
