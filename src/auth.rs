//! Connection-token verification (JWT) and producer API keys.
//!
//! The algorithm comes from config only; a token whose header names another algorithm
//! (including `none`) is refused. Verification never touches the network.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{AuthConfig, JwtAlgorithm};
use crate::ids::{DeviceId, UserId};

/// Why a token was refused. The text goes to the client, so it says what is wrong without
/// echoing library internals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token algorithm is not accepted")]
    BadAlgorithm,
    #[error("token audience is not accepted")]
    BadAudience,
    #[error("token issuer is not accepted")]
    BadIssuer,
    #[error("token subject is not a valid user id")]
    BadSubject,
    #[error("token device claim is not a valid device id")]
    BadDevice,
    #[error("token is malformed or lacks a required claim")]
    Malformed,
    #[error("token expiry is further ahead than this server accepts")]
    LifetimeTooLong,
}

impl AuthError {
    /// Stable machine-readable code for JSON error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "token_missing",
            AuthError::Expired => "token_expired",
            _ => "token_invalid",
        }
    }
}

/// Configuration errors for key material, reported at startup.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {path} is not a valid PEM key for {alg:?}")]
    Pem { path: String, alg: JwtAlgorithm },
    #[error("`herald token` with {0:?} needs auth.jwt_private_key_file")]
    NoPrivateKey(JwtAlgorithm),
}

/// Claims Herald reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// A string or an array of strings (RFC 7519); checked by the JWT library.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Binds the token to one device when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// What a verified token says.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: UserId,
    pub device: Option<DeviceId>,
    /// Unix seconds after which the session must be refreshed or closed.
    pub expires_at: u64,
}

/// Verifies connection tokens with the configured key and rules.
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
    /// Clock skew allowed on `exp`, also applied to running sessions.
    pub leeway_s: u64,
    /// Furthest ahead of now a token's `exp` may be, seconds.
    max_lifetime_s: u64,
}

/// Whether an expiry of `expires_at` (unix seconds) has passed at `now_s`, allowing
/// `leeway_s` of skew; saturating, so no `exp` can wrap the sum around.
pub fn is_expired(expires_at: u64, leeway_s: u64, now_s: u64) -> bool {
    now_s > expires_at.saturating_add(leeway_s)
}

/// Whether `exp` lies further than `max_lifetime_s` ahead of `now_s` (saturating).
pub fn is_too_far_ahead(exp: u64, max_lifetime_s: u64, now_s: u64) -> bool {
    exp > now_s.saturating_add(max_lifetime_s)
}

fn algorithm(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::ES256 => Algorithm::ES256,
    }
}

fn read_key(path: &str) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.into(),
        source,
    })
}

impl TokenVerifier {
    /// Builds a verifier from config, loading the public key file when one is needed.
    pub fn from_config(cfg: &AuthConfig) -> Result<Self, KeyError> {
        let key = match cfg.jwt_algorithm {
            JwtAlgorithm::HS256 => DecodingKey::from_secret(cfg.jwt_secret.as_bytes()),
            alg => {
                let pem = read_key(&cfg.jwt_public_key_file)?;
                let parsed = if alg == JwtAlgorithm::RS256 {
                    DecodingKey::from_rsa_pem(&pem)
                } else {
                    DecodingKey::from_ec_pem(&pem)
                };
                parsed.map_err(|_| KeyError::Pem {
                    path: cfg.jwt_public_key_file.clone(),
                    alg,
                })?
            }
        };
        let mut validation = Validation::new(algorithm(cfg.jwt_algorithm));
        validation.leeway = cfg.leeway_s;
        let mut required = vec!["exp", "sub"];
        if cfg.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&[cfg.audience.as_str()]);
            required.push("aud");
        }
        if !cfg.issuer.is_empty() {
            validation.set_issuer(&[cfg.issuer.as_str()]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        validation.validate_nbf = true;
        Ok(Self {
            key,
            validation,
            leeway_s: cfg.leeway_s,
            max_lifetime_s: cfg.max_token_lifetime_s,
        })
    }

    /// Whether a session whose token expires at `expires_at` must close at `now_s`.
    pub fn expired(&self, expires_at: u64, now_s: u64) -> bool {
        is_expired(expires_at, self.leeway_s, now_s)
    }

    /// Verifies `token` and returns who it is for. An `exp` further ahead than
    /// `auth.max_token_lifetime_s` is refused like a bad claim.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    AuthError::BadAlgorithm
                }
                ErrorKind::InvalidAudience => AuthError::BadAudience,
                ErrorKind::InvalidIssuer => AuthError::BadIssuer,
                _ => AuthError::Malformed,
            },
        )?;
        if is_too_far_ahead(data.claims.exp, self.max_lifetime_s, crate::clock::now_s()) {
            return Err(AuthError::LifetimeTooLong);
        }
        let user = UserId::parse(&data.claims.sub).map_err(|_| AuthError::BadSubject)?;
        let device = match data.claims.device {
            Some(d) => Some(DeviceId::parse(&d).map_err(|_| AuthError::BadDevice)?),
            None => None,
        };
        Ok(Identity {
            user,
            device,
            expires_at: data.claims.exp,
        })
    }
}

/// Signs tokens for `herald token`, demos and tests.
pub struct TokenMinter {
    key: EncodingKey,
    alg: Algorithm,
    audience: Option<String>,
    issuer: Option<String>,
}

impl TokenMinter {
    /// Builds a minter with the configured secret (HS256) or private key file.
    pub fn from_config(cfg: &AuthConfig) -> Result<Self, KeyError> {
        let key = match cfg.jwt_algorithm {
            JwtAlgorithm::HS256 => EncodingKey::from_secret(cfg.jwt_secret.as_bytes()),
            alg => {
                if cfg.jwt_private_key_file.is_empty() {
                    return Err(KeyError::NoPrivateKey(alg));
                }
                let pem = read_key(&cfg.jwt_private_key_file)?;
                let parsed = if alg == JwtAlgorithm::RS256 {
                    EncodingKey::from_rsa_pem(&pem)
                } else {
                    EncodingKey::from_ec_pem(&pem)
                };
                parsed.map_err(|_| KeyError::Pem {
                    path: cfg.jwt_private_key_file.clone(),
                    alg,
                })?
            }
        };
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Ok(Self {
            key,
            alg: algorithm(cfg.jwt_algorithm),
            audience: nonempty(&cfg.audience),
            issuer: nonempty(&cfg.issuer),
        })
    }

    /// A token for `user` valid for `ttl_s` seconds, optionally bound to `device`.
    pub fn mint(&self, user: &UserId, device: Option<&DeviceId>, ttl_s: u64) -> String {
        self.mint_until(user, device, crate::clock::now_s().saturating_add(ttl_s))
    }

    /// A token for `user` with `exp` = `exp` exactly (tests use absurd ones).
    pub fn mint_until(&self, user: &UserId, device: Option<&DeviceId>, exp: u64) -> String {
        let now = crate::clock::now_s();
        let claims = Claims {
            sub: user.to_string(),
            exp,
            iat: Some(now),
            aud: self.audience.clone().map(serde_json::Value::String),
            iss: self.issuer.clone(),
            device: device.map(|d| d.to_string()),
        };
        // unwrap: encoding fails only for a key that does not match the algorithm, which
        // from_config rules out
        jsonwebtoken::encode(&Header::new(self.alg), &claims, &self.key).unwrap()
    }
}

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

    fn cfg() -> AuthConfig {
        AuthConfig {
            jwt_secret: "0123456789abcdef0123".into(),
            ..AuthConfig::default()
        }
    }

    #[test]
    fn minted_token_verifies_to_its_user_and_device() {
        let c = cfg();
        let m = TokenMinter::from_config(&c).unwrap();
        let v = TokenVerifier::from_config(&c).unwrap();
        let u = UserId::parse("alice").unwrap();
        let d = DeviceId::parse("phone").unwrap();
        let id = v.verify(&m.mint(&u, Some(&d), 60)).unwrap();
        assert_eq!(id.user, u);
        assert_eq!(id.device, Some(d));
    }

    #[test]
    fn token_signed_with_another_secret_is_refused() {
        let mut other = cfg();
        other.jwt_secret = "another-secret-of-enough-length".into();
        let m = TokenMinter::from_config(&other).unwrap();
        let v = TokenVerifier::from_config(&cfg()).unwrap();
        let t = m.mint(&UserId::parse("a").unwrap(), None, 60);
        assert_eq!(v.verify(&t).unwrap_err(), AuthError::BadSignature);
    }

    #[test]
    fn token_expiring_absurdly_far_ahead_is_refused() {
        let c = cfg();
        let m = TokenMinter::from_config(&c).unwrap();
        let v = TokenVerifier::from_config(&c).unwrap();
        let u = UserId::parse("a").unwrap();
        let err = v.verify(&m.mint_until(&u, None, u64::MAX)).unwrap_err();
        assert_eq!(err, AuthError::LifetimeTooLong);
        assert_eq!(err.code(), "token_invalid");
        let too_long = c.max_token_lifetime_s + 60;
        assert_eq!(
            v.verify(&m.mint(&u, None, too_long)).unwrap_err(),
            AuthError::LifetimeTooLong
        );
        assert!(v
            .verify(&m.mint(&u, None, c.max_token_lifetime_s - 5))
            .is_ok());
    }

    #[test]
    fn expiry_arithmetic_saturates_instead_of_wrapping() {
        assert!(!is_expired(u64::MAX, 5, u64::MAX));
        assert!(!is_expired(100, 5, 105));
        assert!(is_expired(100, 5, 106));
        assert!(!is_expired(u64::MAX - 1, 10, u64::MAX));
        assert!(!is_too_far_ahead(u64::MAX, 10, u64::MAX));
        assert!(is_too_far_ahead(u64::MAX, 10, 1_700_000_000));
        assert!(!is_too_far_ahead(1_700_000_010, 10, 1_700_000_000));
    }

    #[test]
    fn api_keys_match_exactly() {
        let k = ApiKeys::new(&["key-one-123".into()]);
        assert!(k.accepts(b"key-one-123"));
        assert!(!k.accepts(b"key-one-12"));
        assert!(!k.accepts(b"key-one-124"));
    }
}
