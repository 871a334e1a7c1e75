//! Authentication of node-to-node requests: HMAC-SHA256 over timestamp, sender and body
//! with the cluster secret, a bounded clock window, and a replay cache of seen signatures.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header carrying the sender's node id.
pub const HDR_NODE: &str = "x-herald-node";
/// Header carrying the sender's clock, unix ms.
pub const HDR_TS: &str = "x-herald-timestamp";
/// Header carrying hex(HMAC-SHA256(secret, "<ts>\n<node>\n" + body)).
pub const HDR_SIG: &str = "x-herald-signature";

/// Why an internal request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("missing or malformed signature headers")]
    Missing,
    #[error("timestamp outside the accepted window")]
    Stale,
    #[error("signature does not match")]
    BadSignature,
    #[error("request was already seen (replay)")]
    Replay,
}

fn mac(secret: &[u8], ts: u64, node: &str, body: &[u8]) -> Hmac<Sha256> {
    // unwrap: HMAC accepts keys of any length
    let mut m = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    m.update(itoa::Buffer::new().format(ts).as_bytes());
    m.update(b"\n");
    m.update(node.as_bytes());
    m.update(b"\n");
    m.update(body);
    m
}

/// The signature header value for a request.
pub fn sign(secret: &[u8], ts: u64, node: &str, body: &[u8]) -> String {
    let bytes = mac(secret, ts, node, body).finalize().into_bytes();
    let mut s = String::with_capacity(64);
    for b in bytes {
        s.push(char::from(b"0123456789abcdef"[(b >> 4) as usize]));
        s.push(char::from(b"0123456789abcdef"[(b & 15) as usize]));
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Verifies signatures and remembers them for the replay window.
pub struct Verifier {
    secret: Vec<u8>,
    window_ms: u64,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    set: HashMap<String, u64>,
    order: VecDeque<(u64, String)>,
}

impl Verifier {
    pub fn new(secret: &str, window_ms: u64) -> Self {
        Self {
            secret: secret.as_bytes().to_vec(),
            window_ms,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Checks one request at time `now_ms`; on success the signature can't be used again.
    pub fn verify(
        &self,
        node: Option<&str>,
        ts: Option<&str>,
        sig: Option<&str>,
        body: &[u8],
        now_ms: u64,
    ) -> Result<(), SignError> {
        let (Some(node), Some(ts), Some(sig)) = (node, ts, sig) else {
            return Err(SignError::Missing);
        };
        let ts: u64 = ts.parse().map_err(|_| SignError::Missing)?;
        if ts.abs_diff(now_ms) > self.window_ms {
            return Err(SignError::Stale);
        }
        let raw = unhex(sig).ok_or(SignError::Missing)?;
        mac(&self.secret, ts, node, body)
            .verify_slice(&raw)
            .map_err(|_| SignError::BadSignature)?;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let horizon = now_ms.saturating_sub(2 * self.window_ms);
        while seen.order.front().is_some_and(|(t, _)| *t < horizon) {
            // unwrap: front() was Some
            let (_, s) = seen.order.pop_front().unwrap();
            seen.set.remove(&s);
        }
        if seen.set.contains_key(sig) {
            return Err(SignError::Replay);
        }
        seen.set.insert(sig.to_string(), ts);
        seen.order.push_back((now_ms, sig.to_string()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_request_verifies_once_and_replay_is_refused() {
        let v = Verifier::new("secret-secret-secret", 1000);
        let sig = sign(b"secret-secret-secret", 5000, "n1", b"{}");
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
        let v = Verifier::new("secret-secret-secret", 1000);
        let sig = sign(b"secret-secret-secret", 5000, "n1", b"{}");
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
}
