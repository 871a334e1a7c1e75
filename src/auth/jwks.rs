//! A JSON Web Key Set (`auth.jwks_url`): fetched at startup, again when a token names a
//! `kid` the set lacks (at most once per `auth.jwks_min_refresh_ms`, one fetch at a time)
//! and when the set is older than `auth.jwks_max_age_s`, so keys rotate without a restart.
//! Only keys of the configured algorithm are kept: RSA keys for RS256, P-256 keys for ES256.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::DecodingKey;

use super::{locked, with_client, AuthError};
use crate::config::{AuthConfig, JwtAlgorithm};
use crate::metrics::Counters;

/// Most bytes read from the key set URL.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Lets a refresh through at most once per `min_interval` (plain logic, caller's clock).
#[derive(Debug)]
pub struct RefreshGate {
    min_interval: Duration,
    last: Option<Instant>,
}

impl RefreshGate {
    pub fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            last: None,
        }
    }

    /// Whether a refresh may start at `now` (and, if so, records it).
    pub fn allow(&mut self, now: Instant) -> bool {
        if self
            .last
            .is_some_and(|l| now.saturating_duration_since(l) < self.min_interval)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// The usable keys of one fetched set, by `kid`.
#[derive(Default)]
pub struct KeySet {
    keys: HashMap<String, DecodingKey>,
}

impl KeySet {
    /// Parses a JWKS document, keeping the signing keys of `alg` that have a `kid`.
    pub fn parse(body: &[u8], alg: JwtAlgorithm) -> Result<KeySet, String> {
        let set: JwkSet = serde_json::from_slice(body).map_err(|e| format!("not a JWKS: {e}"))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = &jwk.common.key_id else {
                continue;
            };
            if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
                continue;
            }
            let fits = match (&jwk.algorithm, alg) {
                (AlgorithmParameters::RSA(_), JwtAlgorithm::RS256) => true,
                (AlgorithmParameters::EllipticCurve(p), JwtAlgorithm::ES256) => {
                    p.curve == EllipticCurve::P256
                }
                _ => false,
            };
            if let (true, Ok(key)) = (fits, DecodingKey::from_jwk(jwk)) {
                keys.insert(kid.clone(), key);
            }
        }
        Ok(KeySet { keys })
    }

    pub fn get(&self, kid: &str) -> Option<&DecodingKey> {
        self.keys.get(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The current set and when it was fetched.
struct Current {
    set: Arc<KeySet>,
    fetched: Option<Instant>,
    /// Bumped by every successful fetch.
    generation: u64,
}

pub(super) struct Jwks {
    url: String,
    alg: JwtAlgorithm,
    max_age: Duration,
    timeout: Duration,
    current: Mutex<Current>,
    gate: Mutex<RefreshGate>,
    /// One fetch at a time; others wait and use its result.
    fetching: tokio::sync::Mutex<()>,
    counters: Arc<Counters>,
}

impl Jwks {
    pub(super) fn new(cfg: &AuthConfig, counters: Arc<Counters>) -> Self {
        Self {
            url: cfg.jwks_url.clone(),
            alg: cfg.jwt_algorithm,
            max_age: Duration::from_secs(cfg.jwks_max_age_s),
            timeout: Duration::from_millis(cfg.http.timeout_ms.max(1000)),
            current: Mutex::new(Current {
                set: Arc::default(),
                fetched: None,
                generation: 0,
            }),
            gate: Mutex::new(RefreshGate::new(Duration::from_millis(
                cfg.jwks_min_refresh_ms,
            ))),
            fetching: tokio::sync::Mutex::new(()),
            counters,
        }
    }

    fn current(&self) -> (Arc<KeySet>, Option<Instant>, u64) {
        let c = locked(&self.current);
        (c.set.clone(), c.fetched, c.generation)
    }

    /// Fetches the set now; how many usable keys it has.
    pub(super) async fn refresh(&self) -> Result<usize, String> {
        let start = Instant::now();
        let fetched = self.fetch().await;
        self.counters
            .ops
            .auth
            .op(b"jwks_fetch")
            .observe(start, fetched.is_ok());
        let set = fetched?;
        let n = set.len();
        let mut c = locked(&self.current);
        c.set = Arc::new(set);
        c.fetched = Some(Instant::now());
        c.generation += 1;
        tracing::info!(keys = n, url = %self.url, "JWKS fetched");
        Ok(n)
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let req = with_client(|c| c.get(&self.url).timeout(self.timeout));
        let body = tokio::time::timeout(self.timeout, async {
            let mut resp = req.send().await.map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("JWKS URL answered {}", resp.status()));
            }
            resp.body()
                .limit(MAX_JWKS_BYTES)
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|_| "JWKS fetch timed out".to_string())??;
        KeySet::parse(&body, self.alg)
    }

    /// The key named `kid`: from the current set, or after a refresh when the set lacks it
    /// or is too old. An unknown `kid` after a refresh (or while refreshes are rate-limited)
    /// is refused; a set that could never be fetched is `Unavailable`.
    pub(super) async fn key(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        let (set, fetched, seen) = self.current();
        let fresh = fetched.is_some_and(|f| f.elapsed() < self.max_age);
        if let (true, Some(k)) = (fresh, set.get(kid)) {
            return Ok(k.clone());
        }
        let _one = self.fetching.lock().await;
        let (_, _, generation) = self.current();
        let mut failed = false;
        if generation == seen {
            let allowed = locked(&self.gate).allow(Instant::now());
            if allowed {
                if let Err(e) = self.refresh().await {
                    tracing::warn!(error = %e, "JWKS refresh failed");
                    failed = true;
                }
            } else {
                Counters::add(&self.counters.jwks_refresh_limited, 1);
            }
        }
        let (set, fetched, _) = self.current();
        match set.get(kid) {
            Some(k) => Ok(k.clone()),
            None if fetched.is_none() || failed => Err(AuthError::Unavailable),
            None => Err(AuthError::UnknownKey),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_lets_one_refresh_through_per_interval() {
        let t = Instant::now();
        let mut g = RefreshGate::new(Duration::from_secs(10));
        assert!(g.allow(t));
        assert!(!g.allow(t + Duration::from_secs(1)));
        assert!(!g.allow(t + Duration::from_millis(9_999)));
        assert!(g.allow(t + Duration::from_secs(10)));
    }

    #[test]
    fn only_signing_keys_of_the_configured_algorithm_with_a_kid_are_kept() {
        let rsa = r#"{"kty":"RSA","kid":"r1","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}"#;
        let ec = r#"{"kty":"EC","kid":"e1","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
        let enc = r#"{"kty":"EC","kid":"e2","use":"enc","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
        let nokid = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
        let doc = format!(r#"{{"keys":[{rsa},{ec},{enc},{nokid}]}}"#);
        let es = KeySet::parse(doc.as_bytes(), JwtAlgorithm::ES256).unwrap();
        assert_eq!(es.len(), 1);
        assert!(es.get("e1").is_some() && es.get("r1").is_none());
        let rs = KeySet::parse(doc.as_bytes(), JwtAlgorithm::RS256).unwrap();
        assert_eq!(rs.len(), 1);
        assert!(rs.get("r1").is_some());
        assert!(KeySet::parse(b"{\"nope\":1}", JwtAlgorithm::RS256).is_err());
    }
}
