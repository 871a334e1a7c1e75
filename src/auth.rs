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
        })
    }

    /// Verifies `token` and returns who it is for.
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
        let now = crate::clock::now_s();
        let claims = Claims {
            sub: user.to_string(),
            exp: now + ttl_s,
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

/// Checks producer API keys in constant time per key.
pub struct ApiKeys {
    keys: Vec<Vec<u8>>,
}

impl ApiKeys {
    pub fn new(keys: &[String]) -> Self {
        Self {
            keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
        }
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
    fn api_keys_match_exactly() {
        let k = ApiKeys::new(&["key-one-123".into()]);
        assert!(k.accepts(b"key-one-123"));
        assert!(!k.accepts(b"key-one-12"));
        assert!(!k.accepts(b"key-one-124"));
    }
}
