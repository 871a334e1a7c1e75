//! Property tests of request verification: a genuine signed request passes once, and any
//! change to its sender, timestamp, signature (case included) or body is refused.

use proptest::prelude::*;

use super::*;

const SECRET: &str = "fuzz-secret-0123456789abcdef-0123";
const NOW: u64 = 1_700_000_000_000;

/// One way to tamper with a signed request.
#[derive(Debug, Clone)]
enum Tamper {
    FlipBodyByte(usize, u8),
    AppendToBody(u8),
    ShiftTimestamp(i64),
    OtherNode,
    SignatureHexCase(usize),
    SignatureHexDigit(usize),
    TrailingSpace,
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Tamper::FlipBodyByte(i, x)),
        any::<u8>().prop_map(Tamper::AppendToBody),
        (-1000i64..1000)
            .prop_filter("a change", |d| *d != 0)
            .prop_map(Tamper::ShiftTimestamp),
        Just(Tamper::OtherNode),
        (0usize..SIG_HEX_LEN).prop_map(Tamper::SignatureHexCase),
        (0usize..SIG_HEX_LEN).prop_map(Tamper::SignatureHexDigit),
        Just(Tamper::TrailingSpace),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn a_genuine_request_passes_once_and_any_tampered_one_never(
        body in proptest::collection::vec(any::<u8>(), 1..512),
        how in tamper(),
    ) {
        let v = Verifier::new(SECRET, 30_000);
        let (mut node, mut ts) = ("node-a".to_string(), NOW);
        let mut sig = sign(SECRET.as_bytes(), ts, &node, &body);
        let mut body2 = body.clone();
        match how {
            Tamper::FlipBodyByte(i, x) => {
                let i = i % body2.len();
                body2[i] ^= x;
            }
            Tamper::AppendToBody(b) => body2.push(b),
            Tamper::ShiftTimestamp(d) => ts = ts.saturating_add_signed(d),
            Tamper::OtherNode => node = "node-b".into(),
            Tamper::SignatureHexCase(i) => {
                let c = sig.as_bytes()[i];
                let upper = c.to_ascii_uppercase();
                prop_assume!(upper != c);
                sig.replace_range(i..=i, &(upper as char).to_string());
            }
            Tamper::SignatureHexDigit(i) => {
                let c = sig.as_bytes()[i];
                let other = if c == b'0' { '1' } else { '0' };
                sig.replace_range(i..=i, &other.to_string());
            }
            Tamper::TrailingSpace => sig.push(' '),
        }
        let ts_text = ts.to_string();
        let tampered = v.verify(Some(&node), Some(&ts_text), Some(&sig), &body2, NOW);
        prop_assert!(tampered.is_err(), "{how:?} passed");
        // The genuine request still passes, once.
        let genuine = sign(SECRET.as_bytes(), NOW, "node-a", &body);
        let now = NOW.to_string();
        prop_assert!(v.verify(Some("node-a"), Some(&now), Some(&genuine), &body, NOW).is_ok());
        prop_assert_eq!(
            v.verify(Some("node-a"), Some(&now), Some(&genuine), &body, NOW),
            Err(SignError::Replay)
        );
    }
}
