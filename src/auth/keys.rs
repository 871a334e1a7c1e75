//! Bearer keys: producer API keys and operator admin keys, compared in constant time.

/// Checks bearer keys (producer API keys, operator admin keys) in constant time per key.
pub struct ApiKeys {
    keys: Vec<Vec<u8>>,
}

impl ApiKeys {
    pub fn new(keys: &[String]) -> Self {
        Self {
            keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
        }
    }

    /// True when no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// True when `candidate` is one of the configured keys.
    pub fn accepts(&self, candidate: &[u8]) -> bool {
        self.find(candidate).is_some()
    }

    /// Which configured key `candidate` is (its index), compared in constant time.
    pub fn find(&self, candidate: &[u8]) -> Option<usize> {
        let mut found = None;
        for (i, k) in self.keys.iter().enumerate() {
            if k.len() == candidate.len() {
                let diff = k
                    .iter()
                    .zip(candidate)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b));
                if diff == 0 {
                    found = Some(i);
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_match_exactly() {
        let k = ApiKeys::new(&["key-one-123".into()]);
        assert!(k.accepts(b"key-one-123"));
        assert!(!k.accepts(b"key-one-12"));
        assert!(!k.accepts(b"key-one-124"));
    }
}
