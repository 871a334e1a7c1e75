//! A spread drain: how many of a node's sessions should have been told to reconnect by a
//! given moment ([`DrainPace`], plain arithmetic), so that a restarting node hands its
//! clients to the others at a steady rate instead of all in the same second; and the
//! hub's record of one drain under way ([`Spread`]), which it ticks every [`DRAIN_TICK`].

use std::time::{Duration, Instant};

use bytestring::ByteString;

use crate::actors::session::SessionHandle;
use crate::frames;

/// How often a spread drain closes the next sessions.
pub(super) const DRAIN_TICK: Duration = Duration::from_millis(10);

/// How a drain spreads its closes (from `server.drain_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainPolicy {
    /// Sessions closed per second; 0 = all at once.
    pub close_rate: u32,
    /// The longest the closes may take: past it the rate goes up to fit.
    pub max_spread: Duration,
    /// The reconnect jitter the clients are told to use, ms.
    pub jitter_ms: u64,
}

impl DrainPolicy {
    /// Everything at once, no jitter hint (tests and tools).
    pub const IMMEDIATE: DrainPolicy = DrainPolicy {
        close_rate: 0,
        max_spread: Duration::ZERO,
        jitter_ms: 0,
    };
}

/// One drain's progress over `total` sessions.
#[derive(Debug, Clone)]
pub struct DrainPace {
    total: usize,
    window: Duration,
    closed: usize,
}

impl DrainPace {
    pub fn new(total: usize, policy: &DrainPolicy) -> Self {
        let window = if policy.close_rate == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(total as f64 / f64::from(policy.close_rate))
                .min(policy.max_spread)
        };
        Self {
            total,
            window,
            closed: 0,
        }
    }

    /// How long the closes take.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// How many more sessions to close now, `elapsed` after the drain began.
    pub fn due(&mut self, elapsed: Duration) -> usize {
        let target = if self.window.is_zero() || elapsed >= self.window {
            self.total
        } else {
            let share = elapsed.as_secs_f64() / self.window.as_secs_f64();
            ((self.total as f64 * share).ceil() as usize).min(self.total)
        };
        let now = target.saturating_sub(self.closed);
        self.closed = self.closed.max(target);
        now
    }

    /// Every session has been told.
    pub fn done(&self) -> bool {
        self.closed >= self.total
    }
}

/// A drain under way: the sessions not told yet and the frame they get.
pub(super) struct Spread {
    pace: DrainPace,
    /// Sessions not told yet; told from the end.
    left: Vec<SessionHandle>,
    started: Instant,
    /// `{"type":"reconnect",…}`, sent to each session before its 1012 close.
    notice: ByteString,
}

impl Spread {
    pub(super) fn start(left: Vec<SessionHandle>, policy: &DrainPolicy) -> Self {
        Self {
            pace: DrainPace::new(left.len(), policy),
            left,
            started: Instant::now(),
            notice: frames::reconnect(policy.jitter_ms),
        }
    }

    /// The frame a session gets before its close.
    pub(super) fn notice(&self) -> ByteString {
        self.notice.clone()
    }

    /// Tells the sessions that are due now; true once every one has been told.
    pub(super) fn tell_due(&mut self) -> bool {
        let due = self.pace.due(self.started.elapsed()).min(self.left.len());
        for h in self.left.drain(self.left.len() - due..) {
            h.restart(self.notice.clone());
        }
        self.pace.done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rate: u32, max_ms: u64) -> DrainPolicy {
        DrainPolicy {
            close_rate: rate,
            max_spread: Duration::from_millis(max_ms),
            jitter_ms: 500,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn closes_follow_the_rate_and_add_up_to_every_session_once() {
        let mut p = DrainPace::new(1000, &policy(500, 60_000));
        assert_eq!(p.window(), ms(2000));
        let mut counts = Vec::new();
        for t in (0..=2200).step_by(100) {
            counts.push(p.due(ms(t)));
        }
        assert_eq!(counts[0], 0, "nothing is due at the very start");
        assert!(counts[1..=20].iter().all(|&n| n == 50), "{counts:?}");
        assert_eq!(counts.iter().sum::<usize>(), 1000);
        assert!(p.done());
        assert_eq!(p.due(ms(5000)), 0, "nothing twice");
    }

    #[test]
    fn a_large_node_speeds_up_to_finish_within_the_longest_spread() {
        let mut p = DrainPace::new(100_000, &policy(1000, 10_000));
        assert_eq!(p.window(), ms(10_000), "100 s at the rate, capped at 10 s");
        assert_eq!(p.due(ms(1000)), 10_000);
        assert_eq!(p.due(ms(10_000)), 90_000);
        assert!(p.done());
    }

    #[test]
    fn rate_zero_or_a_few_sessions_close_at_once() {
        let mut p = DrainPace::new(7, &DrainPolicy::IMMEDIATE);
        assert_eq!(p.window(), Duration::ZERO);
        assert_eq!(p.due(Duration::ZERO), 7);
        let mut p = DrainPace::new(3, &policy(1000, 10_000));
        assert_eq!(p.window(), ms(3));
        assert_eq!(p.due(ms(10)), 3);
        let mut empty = DrainPace::new(0, &policy(1000, 10_000));
        assert!(empty.done());
        assert_eq!(empty.due(ms(1)), 0);
    }

    #[test]
    fn late_ticks_catch_up_without_overshooting() {
        let mut p = DrainPace::new(10, &policy(10, 60_000));
        assert_eq!(p.due(ms(150)), 2, "ceil: the first close goes out early");
        assert_eq!(
            p.due(ms(120)),
            0,
            "a clock read out of order closes nothing"
        );
        assert_eq!(p.due(ms(950)), 8);
        assert_eq!(p.due(ms(2000)), 0);
    }
}
