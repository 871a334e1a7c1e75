//! Authentication of node-to-node requests: HMAC-SHA256 over timestamp, sender and body
//! with the cluster secret, a bounded clock window, and a replay cache of seen signatures.
//!
//! Checking is split in two so a receiver never buffers a body it could refuse from the
//! headers alone: [`Verifier::check_headers`] (sender id, fresh timestamp, canonical
//! signature), then the body is fed to a [`BodyMac`] as it streams, then
//! [`Verifier::finish`] compares the signature and records it. Only the canonical form of a
//! signature is accepted (64 lowercase hex digits), and the replay cache keys on the decoded
//! 32 bytes, so a replay cannot slip past it by changing the case of the hex.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ids::NodeId;

/// Header carrying the sender's node id.
pub const HDR_NODE: &str = "x-herald-node";
/// Header carrying the sender's clock, unix ms.
pub const HDR_TS: &str = "x-herald-timestamp";
/// Header carrying hex(HMAC-SHA256(secret, "<ts>\n<node>\n" + body)).
pub const HDR_SIG: &str = "x-herald-signature";

/// Bytes of an HMAC-SHA256 signature.
pub const SIG_BYTES: usize = 32;
/// Length of the only accepted signature form: lowercase hex of [`SIG_BYTES`].
pub const SIG_HEX_LEN: usize = 2 * SIG_BYTES;
/// Most digits of an accepted timestamp (`u64::MAX` has 20).
const MAX_TS_DIGITS: usize = 20;

/// A decoded signature: the replay cache's key.
pub type Signature = [u8; SIG_BYTES];

/// Why an internal request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("missing signature headers")]
    Missing,
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("timestamp outside the accepted window")]
    Stale,
    #[error("signature does not match")]
    BadSignature,
    #[error("request was already seen (replay)")]
    Replay,
}

fn mac(secret: &[u8], ts: u64, node: &str) -> Hmac<Sha256> {
    // unwrap: HMAC accepts keys of any length
    let mut m = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    m.update(itoa::Buffer::new().format(ts).as_bytes());
    m.update(b"\n");
    m.update(node.as_bytes());
    m.update(b"\n");
    m
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The signature header value for a request.
pub fn sign(secret: &[u8], ts: u64, node: &str, body: &[u8]) -> String {
    let mut m = mac(secret, ts, node);
    m.update(body);
    let mut s = String::with_capacity(SIG_HEX_LEN);
    for b in m.finalize().into_bytes() {
        s.push(char::from(HEX[(b >> 4) as usize]));
        s.push(char::from(HEX[(b & 15) as usize]));
    }
    s
}

/// Decodes a signature header in its canonical form only: exactly [`SIG_HEX_LEN`]
/// lowercase hex digits. Upper or mixed case, signs, spaces and other lengths are refused.
pub fn parse_signature(s: &str) -> Option<Signature> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let s = s.as_bytes();
    if s.len() != SIG_HEX_LEN {
        return None;
    }
    let mut out = [0u8; SIG_BYTES];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// Decodes a timestamp header: 1-20 ASCII digits (no sign, no spaces) that fit a u64.
pub fn parse_timestamp(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > MAX_TS_DIGITS || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The signed headers of a request, checked for form and freshness; the body is not yet
/// known to match them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub node: NodeId,
    pub ts: u64,
    pub sig: Signature,
}

/// The HMAC of a request body, fed chunk by chunk as the body arrives.
pub struct BodyMac(Hmac<Sha256>);

impl BodyMac {
    pub fn update(&mut self, chunk: &[u8]) {
        self.0.update(chunk);
    }
}

/// Verifies signatures and remembers them for the replay window.
pub struct Verifier {
    secret: Vec<u8>,
    window_ms: u64,
    seen: Mutex<Seen>,
}

/// Signatures accepted recently, each kept for twice the window after it was accepted: by
/// then its timestamp is stale and the freshness check refuses it anyway.
#[derive(Default)]
struct Seen {
    set: HashMap<Signature, u64>,
    order: VecDeque<(u64, Signature)>,
}

impl Verifier {
    pub fn new(secret: &str, window_ms: u64) -> Self {
        Self {
            secret: secret.as_bytes().to_vec(),
            window_ms,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Step 1, before any of the body is read: every header present and well-formed (a
    /// valid node id, a canonical timestamp and signature) and the timestamp within the
    /// window of `now_ms`.
    pub fn check_headers(
        &self,
        node: Option<&str>,
        ts: Option<&str>,
        sig: Option<&str>,
        now_ms: u64,
    ) -> Result<SignedHeaders, SignError> {
        let (Some(node), Some(ts), Some(sig)) = (node, ts, sig) else {
            return Err(SignError::Missing);
        };
        let node = NodeId::parse(node).map_err(|_| SignError::Malformed(HDR_NODE))?;
        let ts = parse_timestamp(ts).ok_or(SignError::Malformed(HDR_TS))?;
        let sig = parse_signature(sig).ok_or(SignError::Malformed(HDR_SIG))?;
        if ts.abs_diff(now_ms) > self.window_ms {
            return Err(SignError::Stale);
        }
        Ok(SignedHeaders { node, ts, sig })
    }

    /// Step 2: the MAC to feed the body into.
    pub fn body_mac(&self, h: &SignedHeaders) -> BodyMac {
        BodyMac(mac(&self.secret, h.ts, h.node.as_str()))
    }

    /// Step 3, once the whole body went through `body`: the signature must match and must
    /// not have been seen; on success it can't be used again.
    pub fn finish(&self, h: &SignedHeaders, body: BodyMac, now_ms: u64) -> Result<(), SignError> {
        body.0
            .verify_slice(&h.sig)
            .map_err(|_| SignError::BadSignature)?;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let horizon = now_ms.saturating_sub(2 * self.window_ms);
        while seen.order.front().is_some_and(|(t, _)| *t < horizon) {
            // unwrap: front() was Some
            let (_, s) = seen.order.pop_front().unwrap();
            seen.set.remove(&s);
        }
        if seen.set.contains_key(&h.sig) {
            return Err(SignError::Replay);
        }
        seen.set.insert(h.sig, h.ts);
        seen.order.push_back((now_ms, h.sig));
        Ok(())
    }

    /// All three steps over a body already in memory.
    pub fn verify(
        &self,
        node: Option<&str>,
        ts: Option<&str>,
        sig: Option<&str>,
        body: &[u8],
        now_ms: u64,
    ) -> Result<(), SignError> {
        let h = self.check_headers(node, ts, sig, now_ms)?;
        let mut m = self.body_mac(&h);
        m.update(body);
        self.finish(&h, m, now_ms)
    }
}

#[cfg(test)]
#[path = "sign_fuzz.rs"]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "secret-secret-secret";

    fn signed(ts: u64, node: &str, body: &[u8]) -> String {
        sign(SECRET.as_bytes(), ts, node, body)
    }

    #[test]
    fn signed_request_verifies_once_and_replay_is_refused() {
        let v = Verifier::new(SECRET, 1000);
        let sig = signed(5000, "n1", b"{}");
        assert_eq!(
            v.verify(Some("n1"), Some("5000"), Some(&sig), b"{}", 5100),
            Ok(())
        );
        assert_eq!(
            v.verify(Some("n1"), Some("5000"), Some(&sig), b"{}", 5200),
            Err(SignError::Replay)
        );
    }

    #[test]
    fn tampered_stale_or_unsigned_requests_are_refused() {
        let v = Verifier::new(SECRET, 1000);
        let sig = signed(5000, "n1", b"{}");
        assert_eq!(
            v.verify(Some("n1"), Some("5000"), Some(&sig), b"{ }", 5000),
            Err(SignError::BadSignature)
        );
        assert_eq!(
            v.verify(Some("n2"), Some("5000"), Some(&sig), b"{}", 5000),
            Err(SignError::BadSignature)
        );
        assert_eq!(
            v.verify(Some("n1"), Some("5000"), Some(&sig), b"{}", 9000),
            Err(SignError::Stale)
        );
        let other = sign(b"another-secret-abc", 5000, "n1", b"{}");
        assert_eq!(
            v.verify(Some("n1"), Some("5000"), Some(&other), b"{}", 5000),
            Err(SignError::BadSignature)
        );
        assert_eq!(
            v.verify(None, Some("5000"), Some(&sig), b"{}", 5000),
            Err(SignError::Missing)
        );
    }

    #[test]
    fn only_lowercase_hex_of_the_exact_length_is_a_signature() {
        let sig = signed(5000, "n1", b"{}");
        let bytes = parse_signature(&sig).expect("canonical form parses");
        assert_eq!(parse_signature(&hex_of(&bytes)), Some(bytes));
        for bad in [
            sig.to_uppercase(),
            mixed_case(&sig),
            sig[..SIG_HEX_LEN - 2].to_string(),
            format!("{sig}00"),
            format!(" {}", &sig[1..]),
            format!("+{}", &sig[1..]),
            format!("{}g", &sig[..SIG_HEX_LEN - 1]),
            String::new(),
        ] {
            assert_eq!(parse_signature(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn upper_or_mixed_case_replay_is_refused_as_malformed_and_never_reaches_the_cache() {
        let v = Verifier::new(SECRET, 1000);
        let sig = signed(5000, "n1", b"{}");
        assert_eq!(
            v.verify(Some("n1"), Some("5000"), Some(&sig), b"{}", 5000),
            Ok(())
        );
        for variant in [sig.to_uppercase(), mixed_case(&sig)] {
            assert_eq!(
                v.verify(Some("n1"), Some("5000"), Some(&variant), b"{}", 5000),
                Err(SignError::Malformed(HDR_SIG))
            );
        }
    }

    #[test]
    fn replay_cache_keys_on_the_decoded_signature() {
        let v = Verifier::new(SECRET, 1000);
        let sig = signed(5000, "n1", b"{}");
        let first = v.check_headers(Some("n1"), Some("5000"), Some(&sig), 5000);
        let first = first.unwrap();
        let mut m = v.body_mac(&first);
        m.update(b"{}");
        assert_eq!(v.finish(&first, m, 5000), Ok(()));
        // Even if the textual form were let through, the same bytes are the same request.
        let again = SignedHeaders {
            sig: parse_signature(&sig).unwrap(),
            ..first
        };
        let mut m = v.body_mac(&again);
        m.update(b"{}");
        assert_eq!(v.finish(&again, m, 5000), Err(SignError::Replay));
    }

    #[test]
    fn headers_are_checked_for_form_and_freshness_before_any_body() {
        let v = Verifier::new(SECRET, 1000);
        let sig = signed(5000, "n1", b"");
        let check = |node: &str, ts: &str, sig: &str| {
            v.check_headers(Some(node), Some(ts), Some(sig), 5000)
                .map(|_| ())
        };
        assert_eq!(check("n1", "5000", &sig), Ok(()));
        assert_eq!(
            check("no way!", "5000", &sig),
            Err(SignError::Malformed(HDR_NODE))
        );
        for ts in ["+5000", " 5000", "5e3", "", "123456789012345678901"] {
            assert_eq!(check("n1", ts, &sig), Err(SignError::Malformed(HDR_TS)));
        }
        assert_eq!(check("n1", "3999", &sig), Err(SignError::Stale));
        assert_eq!(check("n1", "6001", &sig), Err(SignError::Stale));
        assert_eq!(
            check("n1", "5000", "abc"),
            Err(SignError::Malformed(HDR_SIG))
        );
    }

    #[test]
    fn streaming_the_body_in_chunks_gives_the_one_shot_signature() {
        let v = Verifier::new(SECRET, 1000);
        let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let sig = signed(5000, "n1", &body);
        for chunk in [1, 7, 1000, 4096, body.len()] {
            let h = v
                .check_headers(Some("n1"), Some("5000"), Some(&sig), 5000)
                .unwrap();
            let mut m = v.body_mac(&h);
            for part in body.chunks(chunk) {
                m.update(part);
            }
            let whole = m.0.finalize().into_bytes();
            assert_eq!(hex_of(&whole), sig, "chunks of {chunk}");
        }
    }

    fn hex_of(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn mixed_case(sig: &str) -> String {
        sig.chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    }
}
