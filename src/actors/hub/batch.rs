//! Broadcast batching: a hub shard holds broadcast frames for up to
//! `session.broadcast_batch_ms` and then sends every session one push carrying all of them,
//! encoded once ([`crate::frames::wire`]), which the session writes in one go. Fewer
//! mailbox messages and fewer socket writes per delivery, for at most that much added
//! latency. Plain logic: what to do with a new frame, and what a flush sends.

use std::time::Duration;

use bytestring::ByteString;

use crate::frames::wire::{self, Encoded};

/// Most bytes of frames one batch holds: past it the batch goes out at once.
pub const MAX_BATCH_BYTES: usize = 64 * 1024;

/// What the shard does after a frame joined the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send the batch now.
    FlushNow,
    /// The batch just started: flush it after this long.
    FlushIn(Duration),
    /// A flush is already due.
    Wait,
}

/// The broadcast frames waiting to go out.
#[derive(Debug, Default)]
pub struct Batch {
    frames: Vec<ByteString>,
    bytes: usize,
    delay: Duration,
}

impl Batch {
    pub fn new(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    /// Adds a frame; says when the batch should go.
    pub fn add(&mut self, frame: ByteString) -> Next {
        self.bytes += frame.len();
        self.frames.push(frame);
        if self.delay.is_zero() || self.bytes >= MAX_BATCH_BYTES {
            Next::FlushNow
        } else if self.frames.len() == 1 {
            Next::FlushIn(self.delay)
        } else {
            Next::Wait
        }
    }

    /// The batch, encoded, if it holds anything; the batch starts over empty.
    pub fn take(&mut self) -> Option<Encoded> {
        if self.frames.is_empty() {
            return None;
        }
        let encoded = wire::encode_text(&self.frames);
        self.frames.clear();
        self.bytes = 0;
        Some(encoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_delay_every_frame_goes_at_once() {
        let mut b = Batch::new(Duration::ZERO);
        assert_eq!(b.add("a".into()), Next::FlushNow);
        assert_eq!(b.take().unwrap().frames, 1);
        assert!(b.take().is_none());
    }

    #[test]
    fn the_first_frame_starts_the_clock_and_later_ones_join_until_the_flush() {
        let mut b = Batch::new(Duration::from_millis(20));
        assert_eq!(b.add("a".into()), Next::FlushIn(Duration::from_millis(20)));
        assert_eq!(b.add("b".into()), Next::Wait);
        assert_eq!(b.add("c".into()), Next::Wait);
        let enc = b.take().unwrap();
        assert_eq!(enc.frames, 3);
        assert_eq!(
            enc.bytes,
            wire::encode_text(&["a".into(), "b".into(), "c".into()]).bytes
        );
        assert_eq!(
            b.add("d".into()),
            Next::FlushIn(Duration::from_millis(20)),
            "a new batch"
        );
    }

    #[test]
    fn a_batch_past_its_byte_cap_goes_at_once() {
        let mut b = Batch::new(Duration::from_secs(1));
        let big = ByteString::from("x".repeat(MAX_BATCH_BYTES / 2));
        assert!(matches!(b.add(big.clone()), Next::FlushIn(_)));
        assert_eq!(b.add(big), Next::FlushNow);
        assert_eq!(b.take().unwrap().frames, 2);
    }
}
