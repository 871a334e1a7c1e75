//! The wire format of node-to-node forwards (`POST /internal/v1/deliver`): encoding a batch
//! of envelopes with the pre-encoded frames spliced in verbatim, and decoding one.
//!
//! ```json
//! {"from": "<node>", "deliveries": [{"user": "u1", "seq": 3, "frame": {…}}], "broadcasts": [{…}]}
//! ```

use bytestring::ByteString;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::ids::{Seq, UserId};
use crate::store::Delivery;

/// Something to forward.
#[derive(Debug, Clone)]
pub enum Envelope {
    Message(Delivery),
    Broadcast(ByteString),
}

/// A decoded forward.
#[derive(Debug)]
pub struct Forward {
    /// The sending node, as it named itself in the body.
    pub from: String,
    pub deliveries: Vec<Delivery>,
    pub broadcasts: Vec<ByteString>,
}

/// Builds the JSON body of a forward by splicing the pre-encoded frames in.
pub fn encode(me: &str, items: &[Envelope]) -> String {
    let size: usize = items
        .iter()
        .map(|e| match e {
            Envelope::Message(d) => d.frame.len() + d.user.as_str().len() + 48,
            Envelope::Broadcast(f) => f.len() + 1,
        })
        .sum();
    let mut s = String::with_capacity(size + 64);
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
            s.push_str(&d.frame);
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
            .map(|d| Delivery {
                user: d.user,
                seq: d.seq,
                frame: ByteString::from(d.frame.get()),
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
                frame: frame.clone(),
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
                frame: frame.clone(),
            }),
        ];
        let fwd = decode(encode("node-a", &items).as_bytes()).unwrap();
        assert_eq!(fwd.from, "node-a");
        assert_eq!(fwd.deliveries.len(), 1);
        assert_eq!(fwd.deliveries[0].user.as_str(), "u9");
        assert_eq!(fwd.deliveries[0].seq, 7);
        assert_eq!(fwd.deliveries[0].frame, frame);
        assert_eq!(fwd.broadcasts, vec![cast]);
    }

    #[test]
    fn malformed_forwards_are_refused_with_a_reason() {
        assert!(decode(b"\xff").unwrap_err().contains("UTF-8"));
        assert!(decode(b"{}").unwrap_err().contains("from"));
        let bad_user = r#"{"from":"n","deliveries":[{"user":"no way!","seq":1,"frame":{}}]}"#;
        assert!(decode(bad_user.as_bytes()).is_err());
    }
}
