//! The node's one wall clock: unix time in milliseconds or seconds.
//!
//! Everything that stamps or compares wall-clock time (token expiry, message `ts`, route
//! deadlines, signed-request windows) reads it here, so a test or a future mockable clock has
//! one place to hook.

use std::time::{SystemTime, UNIX_EPOCH};

/// Current unix time in milliseconds (0 if the system clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Current unix time in seconds.
pub fn now_s() -> u64 {
    now_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_milliseconds_agree() {
        let ms = now_ms();
        let s = now_s();
        assert!(ms > 1_600_000_000_000, "clock reads a plausible date: {ms}");
        assert!(s.abs_diff(ms / 1000) <= 1);
    }
}
