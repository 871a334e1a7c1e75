//! JWT connection tokens: verification with the configured key (or a key of the JWKS the
//! caller looked up by `kid`), and minting for `herald token`, demos and tests.
//!
//! The algorithm comes from config only; a token whose header names another algorithm
//! (including `none`) is refused. Nothing here touches the network.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{AuthError, Identity, KeyError};
use crate::config::{AuthConfig, JwtAlgorithm};
use crate::ids::{DeviceId, UserId};

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

/// Verifies connection tokens with the configured key and rules.
pub struct TokenVerifier {
    /// The configured key; `None` when keys come from a key set (`auth.jwks_url`).
    key: Option<DecodingKey>,
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
            JwtAlgorithm::HS256 => Some(DecodingKey::from_secret(cfg.jwt_secret.as_bytes())),
            _ if !cfg.jwks_url.is_empty() => None,
            alg => {
                let pem = read_key(&cfg.jwt_public_key_file)?;
                let parsed = if alg == JwtAlgorithm::RS256 {
                    DecodingKey::from_rsa_pem(&pem)
                } else {
                    DecodingKey::from_ec_pem(&pem)
                };
                Some(parsed.map_err(|_| KeyError::Pem {
                    path: cfg.jwt_public_key_file.clone(),
                    alg,
                })?)
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

    /// Verifies `token` with the configured key (see [`Self::verify_with`]); with a key set
    /// configured instead, every token is refused here.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        match &self.key {
            Some(key) => self.verify_with(token, key),
            None => Err(AuthError::UnknownKey),
        }
    }

    /// Whether keys come from a key set.
    pub fn uses_key_set(&self) -> bool {
        self.key.is_none()
    }

    /// The `kid` of `token`'s header, if any (the header is not trusted for anything else).
    pub fn kid(token: &str) -> Result<Option<String>, AuthError> {
        jsonwebtoken::decode_header(token)
            .map(|h| h.kid)
            .map_err(|_| AuthError::Malformed)
    }

    /// Verifies `token` with `key` and returns who it is for. An `exp` further ahead than
    /// `auth.max_token_lifetime_s` is refused like a bad claim.
    pub fn verify_with(&self, token: &str, key: &DecodingKey) -> Result<Identity, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let data =
            jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => AuthError::Expired,
                    ErrorKind::InvalidSignature => AuthError::BadSignature,
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        AuthError::BadAlgorithm
                    }
                    ErrorKind::InvalidAudience => AuthError::BadAudience,
                    ErrorKind::InvalidIssuer => AuthError::BadIssuer,
                    _ => AuthError::Malformed,
                }
            })?;
        if is_too_far_ahead(data.claims.exp, self.max_lifetime_s, crate::clock::now_s()) {
            return Err(AuthError::LifetimeTooLong);
        }
        let c = data.claims;
        Identity::vouched(&c.sub, c.device.as_deref(), c.exp, None)
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
        self.mint_at(user, device, crate::clock::now_s(), exp)
    }

    /// A token issued at `iat` (the same arguments give the same token: benchmarks replay
    /// tokens to measure an auth cache).
    pub fn mint_at(&self, user: &UserId, device: Option<&DeviceId>, iat: u64, exp: u64) -> String {
        let claims = Claims {
            sub: user.to_string(),
            exp,
            iat: Some(iat),
            aud: self.audience.clone().map(serde_json::Value::String),
            iss: self.issuer.clone(),
            device: device.map(|d| d.to_string()),
        };
        // unwrap: encoding fails only for a key that does not match the algorithm, which
        // from_config rules out
        jsonwebtoken::encode(&Header::new(self.alg), &claims, &self.key).unwrap()
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
}
