//! Verification of node-to-node requests (`/internal/v1/deliver`): arbitrary headers and
//! body are refused for the right reason and never accepted with a signature that is not
//! the genuine one; a genuinely signed request passes once, its replay is refused, and so is
//! its signature in upper case.
//!
//! Input layout: byte 0 says which headers are present (bits 0-2: node, timestamp,
//! signature); bytes 1-3 are the lengths of the node, timestamp and signature parts; bytes
//! 4-5 a signed offset (ms) from the timestamp to the receiver's clock; then the three parts
//! (lossy UTF-8, as header text) and the rest is the body.

#![no_main]

use herald::cluster::sign::{sign, SignError, Verifier, HDR_NODE, HDR_SIG, HDR_TS, SIG_HEX_LEN};
use herald::ids::NodeId;
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzz-cluster-secret-0123456789abcdef";
const WINDOW_MS: u64 = 30_000;
/// The receiver's clock when the timestamp part is not a timestamp.
const NOW: u64 = 1_700_000_000_000;

fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let n = n.min(data.len());
    let (head, rest) = data.split_at(n);
    *data = rest;
    head
}

/// The timestamp rule, written out on its own: 1-20 ASCII digits whose value fits a u64.
fn model_ts(s: &str) -> Option<u64> {
    let ok = !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| s.parse::<u128>().ok())
        .flatten()
        .and_then(|n| u64::try_from(n).ok())
}

/// The signature rule: exactly 64 lowercase hex digits.
fn model_sig_ok(s: &str) -> bool {
    s.len() == SIG_HEX_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The refusal the header checks must give, in their order, or None if they pass.
fn model_headers(
    node: Option<&str>,
    ts: Option<&str>,
    sig: Option<&str>,
    now: u64,
) -> Option<SignError> {
    let (Some(node), Some(ts), Some(sig)) = (node, ts, sig) else {
        return Some(SignError::Missing);
    };
    if NodeId::parse(node).is_err() {
        return Some(SignError::Malformed(HDR_NODE));
    }
    let Some(ts) = model_ts(ts) else {
        return Some(SignError::Malformed(HDR_TS));
    };
    if !model_sig_ok(sig) {
        return Some(SignError::Malformed(HDR_SIG));
    }
    (ts.abs_diff(now) > WINDOW_MS).then_some(SignError::Stale)
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let head = take(&mut data, 6);
    let byte = |i: usize| head.get(i).copied().unwrap_or(0);
    let present = byte(0);
    let offset = i64::from(i16::from_le_bytes([byte(4), byte(5)]));
    let node = String::from_utf8_lossy(take(&mut data, byte(1).into())).into_owned();
    let ts = String::from_utf8_lossy(take(&mut data, byte(2).into())).into_owned();
    let sig = String::from_utf8_lossy(take(&mut data, byte(3).into())).into_owned();
    let body = data;
    let now = model_ts(&ts)
        .map(|t| t.saturating_add_signed(offset))
        .unwrap_or(NOW);
    let header = |bit: u8, s: &str| (present & (1 << bit) == 0).then(|| s.to_string());
    let (h_node, h_ts, h_sig) = (header(0, &node), header(1, &ts), header(2, &sig));

    // 1. The request as the fuzzer wrote it.
    let v = Verifier::new(SECRET, WINDOW_MS);
    let got = v.verify(
        h_node.as_deref(),
        h_ts.as_deref(),
        h_sig.as_deref(),
        body,
        now,
    );
    match model_headers(h_node.as_deref(), h_ts.as_deref(), h_sig.as_deref(), now) {
        Some(want) => assert_eq!(got, Err(want)),
        None => {
            if got.is_ok() {
                // Only the genuine signature of exactly these parts may pass.
                let ts = model_ts(&ts).unwrap();
                assert_eq!(sig, sign(SECRET.as_bytes(), ts, &node, body));
            } else {
                assert_eq!(got, Err(SignError::BadSignature));
            }
        }
    }

    // 2. A genuine request made from the input: a valid sender (the node part, or a fixed
    // id), its timestamp (or NOW), the body, and a receiver clock within the window.
    let node = if NodeId::parse(&node).is_ok() {
        node
    } else {
        "node-a".to_string()
    };
    let ts = model_ts(&ts).unwrap_or(NOW);
    let now = ts.saturating_add_signed(offset % (WINDOW_MS as i64 + 1));
    let ts_text = ts.to_string();
    let genuine = sign(SECRET.as_bytes(), ts, &node, body);
    let verify = |v: &Verifier, sig: &str, body: &[u8], now: u64| {
        v.verify(Some(&node), Some(&ts_text), Some(sig), body, now)
    };
    let upper = genuine.to_uppercase();
    let v = Verifier::new(SECRET, WINDOW_MS);
    if upper != genuine {
        // Upper case is never a signature, even before the genuine one was seen.
        assert_eq!(
            verify(&v, &upper, body, now),
            Err(SignError::Malformed(HDR_SIG))
        );
    }
    // Outside the window it is stale, and is not recorded.
    let late = ts.saturating_add(WINDOW_MS + 1);
    if late.abs_diff(ts) > WINDOW_MS {
        assert_eq!(verify(&v, &genuine, body, late), Err(SignError::Stale));
    }
    // One more body byte, another sender: not this signature.
    let mut longer = body.to_vec();
    longer.push(b' ');
    assert_eq!(
        verify(&v, &genuine, &longer, now),
        Err(SignError::BadSignature)
    );
    let other = if node == "node-b" { "node-c" } else { "node-b" };
    assert_eq!(
        v.verify(Some(other), Some(&ts_text), Some(&genuine), body, now),
        Err(SignError::BadSignature)
    );
    // Accepted once; then a replay, in either case, is refused.
    assert_eq!(verify(&v, &genuine, body, now), Ok(()));
    assert_eq!(verify(&v, &genuine, body, now), Err(SignError::Replay));
    assert!(verify(&v, &upper, body, now).is_err());
});
