//! The wire format of node-to-node forwards (`POST /internal/v1/deliver`): encoding a batch
//! of envelopes with the pre-encoded frames spliced in verbatim, and decoding one.
//!
//! ```json
//! {"from": "<node>", "deliveries": [{"user": "u1", "seq": 3, "frame": {…}, "at": 1700000000000000}], "broadcasts": [{…}]}
//! ```
//!
//! `at` (unix µs) is when a live message arrived at ingestion, for the pipeline latencies
//! (absent for a frame read back from the store).
//!
//! Also the size of a forward, shared by both ends: the sender cuts its queue into batches
//! with [`BatchLimits::take`], and the receiver refuses bodies over [`BatchLimits::max_body`],
//! the most such a batch can encode to.

use std::collections::VecDeque;

use bytestring::ByteString;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::frames::Frame;
use crate::ids::{Seq, UserId};
use crate::store::Delivery;

/// Something to forward.
#[derive(Debug, Clone)]
pub enum Envelope {
    Message(Delivery),
    Broadcast(ByteString),
}

impl Envelope {
    /// When the producer's request for a live message arrived (µs), for stage latencies.
    pub fn arrived_us(&self) -> Option<u64> {
        match self {
            Envelope::Message(d) => d.frame.arrived_us(),
            Envelope::Broadcast(_) => None,
        }
    }
}

/// A decoded forward.
#[derive(Debug)]
pub struct Forward {
    /// The sending node, as it named itself in the body.
    pub from: String,
    pub deliveries: Vec<Delivery>,
    pub broadcasts: Vec<ByteString>,
}

/// Most envelopes in one forward POST.
pub const MAX_FORWARD_ENVELOPES: usize = 2000;
/// Byte budget of one forward POST's envelopes: a batch takes no further envelope that would
/// go past it, but always takes at least one. Small enough that a receiver can afford to
/// buffer a batch before knowing it is genuine, large enough to amortise a round trip.
pub const FORWARD_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Most bytes one delivery envelope adds to its frame (it is 28 plus the user id, at most
/// 128, plus the seq, at most 20 digits, plus `,"at":` and at most 20 digits):
/// `{"user":"…","seq":…,"frame":…,"at":…}` and a comma.
pub const ENVELOPE_OVERHEAD: usize = 256;
/// Most bytes a forward body adds to its envelopes (41 plus the quoted node id, at most
/// 130): `{"from":"…","deliveries":[…],"broadcasts":[…]}`.
pub const BODY_OVERHEAD: usize = 256;

/// How much one forward POST carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most envelopes in one batch.
    pub envelopes: usize,
    /// Byte budget of one batch's encoded envelopes (see [`FORWARD_BATCH_BYTES`]).
    pub bytes: usize,
}

/// The limits every node forwards with.
pub const FORWARD_BATCH: BatchLimits = BatchLimits {
    envelopes: MAX_FORWARD_ENVELOPES,
    bytes: FORWARD_BATCH_BYTES,
};

/// Bytes `e` takes in an encoded forward, its separating comma included.
pub fn encoded_len(e: &Envelope) -> usize {
    match e {
        Envelope::Message(d) => {
            let at = d
                .frame
                .arrived_us()
                .map_or(0, |at| 6 + itoa::Buffer::new().format(at).len());
            28 + d.user.as_str().len()
                + itoa::Buffer::new().format(d.seq).len()
                + d.frame.len()
                + at
        }
        Envelope::Broadcast(f) => f.len() + 1,
    }
}

impl BatchLimits {
    /// Takes the next batch off the front of `queue`: as many envelopes as the limits allow,
    /// and at least one (an envelope bigger than the byte budget travels alone).
    pub fn take(&self, queue: &mut VecDeque<Envelope>) -> Vec<Envelope> {
        let (mut n, mut bytes) = (0, 0);
        for e in queue.iter() {
            let len = encoded_len(e);
            if n == self.envelopes || (n > 0 && bytes + len > self.bytes) {
                break;
            }
            n += 1;
            bytes += len;
        }
        queue.drain(..n).collect()
    }

    /// The largest body a batch taken with these limits encodes to, when no message frame is
    /// longer than `max_frame` bytes: never more envelopes than `envelopes`, and never more
    /// envelope bytes than the byte budget, unless a single envelope is bigger on its own.
    pub fn max_body(&self, max_frame: usize) -> usize {
        let envelope = max_frame + ENVELOPE_OVERHEAD;
        let by_count = self.envelopes.saturating_mul(envelope);
        let by_bytes = self.bytes.max(envelope);
        by_count.min(by_bytes) + BODY_OVERHEAD
    }
}

/// Builds the JSON body of a forward by splicing the pre-encoded frames in.
pub fn encode(me: &str, items: &[Envelope]) -> String {
    let size: usize = items.iter().map(encoded_len).sum();
    let mut s = String::with_capacity(size + BODY_OVERHEAD);
    s.push_str(r#"{"from":"#);
    // unwrap: serializing a &str cannot fail
    s.push_str(&serde_json::to_string(me).unwrap());
    s.push_str(r#","deliveries":["#);
    let mut first = true;
    for e in items {
        if let Envelope::Message(d) = e {
            if !first {
                s.push(',');
            }
            first = false;
            s.push_str(r#"{"user":""#);
            // User ids are restricted to characters that need no JSON escaping.
            s.push_str(d.user.as_str());
            s.push_str(r#"","seq":"#);
            s.push_str(itoa::Buffer::new().format(d.seq));
            s.push_str(r#","frame":"#);
            d.frame.write_to(&mut s);
            if let Some(at) = d.frame.arrived_us() {
                s.push_str(r#","at":"#);
                s.push_str(itoa::Buffer::new().format(at));
            }
            s.push('}');
        }
    }
    s.push_str(r#"],"broadcasts":["#);
    first = true;
    for e in items {
        if let Envelope::Broadcast(f) = e {
            if !first {
                s.push(',');
            }
            first = false;
            s.push_str(f);
        }
    }
    s.push_str("]}");
    s
}

#[derive(Deserialize)]
struct DeliveryIn<'a> {
    user: UserId,
    seq: Seq,
    #[serde(borrow)]
    frame: &'a RawValue,
    #[serde(default)]
    at: Option<u64>,
}

#[derive(Deserialize)]
struct ForwardIn<'a> {
    from: &'a str,
    #[serde(borrow, default)]
    deliveries: Vec<DeliveryIn<'a>>,
    #[serde(borrow, default)]
    broadcasts: Vec<&'a RawValue>,
}

/// Decodes a forward body; the error text names what is wrong.
pub fn decode(body: &[u8]) -> Result<Forward, String> {
    let text = std::str::from_utf8(body).map_err(|_| "body: not UTF-8".to_string())?;
    let fwd: ForwardIn = serde_json::from_str(text).map_err(|e| format!("body: {e}"))?;
    Ok(Forward {
        from: fwd.from.to_string(),
        deliveries: fwd
            .deliveries
            .into_iter()
            .map(|d| {
                let text = ByteString::from(d.frame.get());
                let frame = match d.at {
                    Some(arrived_us) => Frame::Forwarded { text, arrived_us },
                    None => Frame::Text(text),
                };
                Delivery {
                    user: d.user,
                    seq: d.seq,
                    frame,
                }
            })
            .collect(),
        broadcasts: fwd
            .broadcasts
            .into_iter()
            .map(|b| ByteString::from(b.get()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_forward_is_valid_json_carrying_frames_verbatim() {
        let frame = ByteString::from(r#"{"type":"message","seq":3}"#);
        let items = vec![
            Envelope::Message(Delivery {
                user: UserId::parse("u1").unwrap(),
                seq: 3,
                frame: Frame::Text(frame.clone()),
            }),
            Envelope::Broadcast(ByteString::from(r#"{"type":"message","seq":null}"#)),
        ];
        let v: serde_json::Value = serde_json::from_str(&encode("n\"1", &items)).unwrap();
        assert_eq!(v["from"], "n\"1");
        assert_eq!(v["deliveries"][0]["user"], "u1");
        assert_eq!(v["deliveries"][0]["seq"], 3);
        assert_eq!(v["deliveries"][0]["frame"]["seq"], 3);
        assert!(v["broadcasts"][0]["seq"].is_null());
    }

    #[test]
    fn decoding_an_encoded_forward_gives_back_the_same_envelopes() {
        let frame = ByteString::from(r#"{"type":"message","seq":7,"payload":{"a":[1,2]}}"#);
        let cast = ByteString::from(r#"{"type":"message","seq":null}"#);
        let items = vec![
            Envelope::Broadcast(cast.clone()),
            Envelope::Message(Delivery {
                user: UserId::parse("u9").unwrap(),
                seq: 7,
                frame: Frame::Text(frame.clone()),
            }),
            Envelope::Message(Delivery {
                user: UserId::parse("u8").unwrap(),
                seq: 8,
                frame: Frame::Forwarded {
                    text: frame.clone(),
                    arrived_us: 1_700_000_000_000_123,
                },
            }),
        ];
        let body = encode("node-a", &items);
        // 41 bytes of framing, the quoted node id, and the envelopes.
        assert!(body.len() <= 41 + 8 + items.iter().map(encoded_len).sum::<usize>());
        let fwd = decode(body.as_bytes()).unwrap();
        assert_eq!(fwd.from, "node-a");
        assert_eq!(fwd.deliveries.len(), 2);
        assert_eq!(
            fwd.deliveries[1].frame.arrived_us(),
            Some(1_700_000_000_000_123)
        );
        assert_eq!(fwd.deliveries[0].frame.arrived_us(), None);
        assert_eq!(fwd.deliveries[0].user.as_str(), "u9");
        assert_eq!(fwd.deliveries[0].seq, 7);
        assert_eq!(fwd.deliveries[0].frame, Frame::Text(frame));
        assert_eq!(fwd.broadcasts, vec![cast]);
    }

    /// A queue of envelopes with frames of pseudo-random sizes up to `max_frame`.
    fn queue_of(n: usize, max_frame: usize, mut seed: u64) -> VecDeque<Envelope> {
        (0..n)
            .map(|i| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let len = 2 + (seed >> 33) as usize % (max_frame - 1);
                let frame = ByteString::from(format!("\"{}\"", "x".repeat(len - 2)));
                if i % 5 == 0 {
                    Envelope::Broadcast(frame)
                } else {
                    Envelope::Message(Delivery {
                        user: UserId::parse(&"u".repeat(1 + i % 128)).unwrap(),
                        seq: u64::MAX - i as u64,
                        frame: if i % 2 == 0 {
                            Frame::Forwarded {
                                text: frame,
                                arrived_us: u64::MAX,
                            }
                        } else {
                            Frame::Text(frame)
                        },
                    })
                }
            })
            .collect()
    }

    #[test]
    fn batches_respect_both_limits_and_always_make_progress() {
        let limits = BatchLimits {
            envelopes: 10,
            bytes: 1000,
        };
        let mut q = queue_of(100, 150, 1);
        let mut taken = 0;
        while !q.is_empty() {
            let batch = limits.take(&mut q);
            assert!(!batch.is_empty() && batch.len() <= 10);
            let bytes: usize = batch.iter().map(encoded_len).sum();
            assert!(batch.len() == 1 || bytes <= 1000, "{bytes} bytes");
            taken += batch.len();
        }
        assert_eq!(taken, 100);
        // One envelope over the byte budget still goes, alone.
        let mut big = queue_of(3, 5000, 2);
        big.push_front(Envelope::Broadcast(ByteString::from("x".repeat(4000))));
        assert_eq!(limits.take(&mut big).len(), 1);
    }

    #[test]
    fn no_encoded_batch_exceeds_the_receivers_body_cap() {
        let node = "n".repeat(crate::ids::MAX_ID_LEN);
        for (envelopes, bytes, max_frame) in [(10, 1000, 150), (3, 100_000, 5000), (50, 500, 40)] {
            let limits = BatchLimits { envelopes, bytes };
            let mut q = queue_of(200, max_frame, envelopes as u64);
            while !q.is_empty() {
                let batch = limits.take(&mut q);
                let body = encode(&node, &batch);
                assert!(
                    body.len() <= limits.max_body(max_frame),
                    "{} bytes",
                    body.len()
                );
            }
        }
    }

    #[test]
    fn the_default_body_cap_is_the_batch_budget_plus_framing() {
        // With the default ingest limit (1 MiB) one envelope fits in the 4 MiB budget.
        let frame = crate::frames::max_message_frame(1024 * 1024);
        assert_eq!(
            FORWARD_BATCH.max_body(frame),
            FORWARD_BATCH_BYTES + BODY_OVERHEAD
        );
        // Tiny messages: 2000 envelopes are the tighter bound.
        let frame = crate::frames::max_message_frame(1024);
        assert_eq!(
            FORWARD_BATCH.max_body(frame),
            MAX_FORWARD_ENVELOPES * (frame + ENVELOPE_OVERHEAD) + BODY_OVERHEAD
        );
    }

    #[test]
    fn malformed_forwards_are_refused_with_a_reason() {
        assert!(decode(b"\xff").unwrap_err().contains("UTF-8"));
        assert!(decode(b"{}").unwrap_err().contains("from"));
        let bad_user = r#"{"from":"n","deliveries":[{"user":"no way!","seq":1,"frame":{}}]}"#;
        assert!(decode(bad_user.as_bytes()).is_err());
    }
}
