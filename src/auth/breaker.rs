//! The auth endpoint's circuit breaker, plain logic on a clock the caller passes in:
//! closed until `threshold` consecutive failures, then open (every call fails at once) for
//! `open_for`, then one probe call at a time decides whether it closes again.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    /// A probe is out since then; another is allowed if it never reported (cancelled).
    Probing {
        since: Instant,
    },
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    failures: u32,
    state: State,
}

impl Breaker {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for,
            failures: 0,
            state: State::Closed,
        }
    }

    /// Whether a call may go out now (an open breaker lets one probe through per
    /// `open_for`).
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            State::Closed => true,
            State::Open { until } | State::Probing { since: until } if now < until => false,
            State::Open { .. } | State::Probing { .. } => {
                self.state = State::Probing {
                    since: now + self.open_for,
                };
                true
            }
        }
    }

    /// The call got an answer (an accept or a refusal): the endpoint works.
    pub fn success(&mut self) {
        self.failures = 0;
        self.state = State::Closed;
    }

    /// The call failed (unreachable, timed out, 5xx, garbage).
    pub fn failure(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        let reopen = matches!(self.state, State::Probing { .. });
        if reopen || self.failures >= self.threshold {
            self.state = State::Open {
                until: now + self.open_for,
            };
        }
    }

    /// Whether calls are being failed fast.
    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: Duration = Duration::from_secs(5);

    #[test]
    fn opens_after_consecutive_failures_only() {
        let t = Instant::now();
        let mut b = Breaker::new(3, OPEN);
        b.failure(t);
        b.failure(t);
        b.success();
        b.failure(t);
        b.failure(t);
        assert!(
            b.allow(t) && !b.is_open(),
            "a success in between resets the count"
        );
        b.failure(t);
        assert!(b.is_open());
        assert!(!b.allow(t + Duration::from_secs(1)), "open: fail fast");
    }

    #[test]
    fn after_the_open_time_one_probe_decides() {
        let t = Instant::now();
        let mut b = Breaker::new(1, OPEN);
        b.failure(t);
        let later = t + OPEN;
        assert!(b.allow(later), "the probe goes out");
        assert!(!b.allow(later), "only one probe at a time");
        b.failure(later);
        assert!(
            !b.allow(later + Duration::from_secs(1)),
            "a failed probe reopens"
        );
        let again = later + OPEN;
        assert!(b.allow(again));
        b.success();
        assert!(!b.is_open());
        assert!(
            b.allow(again) && b.allow(again),
            "closed: every call goes out"
        );
    }

    #[test]
    fn a_probe_that_never_reports_does_not_wedge_the_breaker() {
        let t = Instant::now();
        let mut b = Breaker::new(1, OPEN);
        b.failure(t);
        assert!(b.allow(t + OPEN));
        assert!(!b.allow(t + OPEN + Duration::from_secs(1)));
        assert!(
            b.allow(t + OPEN * 2),
            "another probe once the first is overdue"
        );
    }
}
