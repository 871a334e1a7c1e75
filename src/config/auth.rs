//! `[auth]`: how connection tokens, producer API keys and operator (admin) keys are checked;
//! with their checks. Whether the secrets are strong enough to face a network is judged at
//! startup by `secrets.rs`, which knows the listeners.

use serde::Deserialize;

use super::{invalid, ConfigError};

/// Largest `auth.leeway_s`: clock skew beyond five minutes is a broken clock, not skew.
pub const MAX_LEEWAY_S: u64 = 300;
/// Bounds of `auth.max_token_lifetime_s`: a minute to ten years.
pub const TOKEN_LIFETIME_RANGE_S: std::ops::RangeInclusive<u64> = 60..=315_360_000;

/// JWT algorithm families Herald verifies; fixed by config, never read from a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum JwtAlgorithm {
    HS256,
    RS256,
    ES256,
}

/// `[auth]`: how connection tokens and producer API keys are checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Algorithm every token must use.
    pub jwt_algorithm: JwtAlgorithm,
    /// HS256 shared secret (also used by `herald token`).
    pub jwt_secret: String,
    /// PEM public key file for RS256/ES256.
    pub jwt_public_key_file: String,
    /// PEM private key file, only for `herald token` with RS256/ES256.
    pub jwt_private_key_file: String,
    /// Required `aud` claim; empty means not checked.
    pub audience: String,
    /// Required `iss` claim; empty means not checked.
    pub issuer: String,
    /// Clock skew allowed on `exp`, seconds (at most [`MAX_LEEWAY_S`]).
    pub leeway_s: u64,
    /// Furthest a token's `exp` may lie ahead of now, seconds: a token valid for longer is
    /// refused (it is a leaked credential waiting to happen, and an absurd `exp` such as
    /// 2^64-1 must not reach the session's expiry arithmetic).
    pub max_token_lifetime_s: u64,
    /// Producer API keys accepted as `Authorization: Bearer <key>`.
    pub api_keys: Vec<String>,
    /// Operator keys for `GET /api/v1/stats` (`Authorization: Bearer <key>`); empty means
    /// stats answers only requests from a loopback peer address.
    pub admin_keys: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_algorithm: JwtAlgorithm::HS256,
            jwt_secret: String::new(),
            jwt_public_key_file: String::new(),
            jwt_private_key_file: String::new(),
            audience: String::new(),
            issuer: String::new(),
            leeway_s: 5,
            max_token_lifetime_s: 30 * 86_400,
            api_keys: Vec::new(),
            admin_keys: Vec::new(),
        }
    }
}

impl AuthConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.jwt_algorithm {
            JwtAlgorithm::HS256 if self.jwt_secret.len() < 16 => {
                return Err(invalid(
                    "auth.jwt_secret",
                    "HS256 needs a secret of at least 16 bytes",
                ))
            }
            JwtAlgorithm::RS256 | JwtAlgorithm::ES256 if self.jwt_public_key_file.is_empty() => {
                return Err(invalid(
                    "auth.jwt_public_key_file",
                    "RS256/ES256 need a PEM public key file",
                ))
            }
            _ => {}
        }
        if self.leeway_s > MAX_LEEWAY_S {
            return Err(invalid(
                "auth.leeway_s",
                format!("must be at most {MAX_LEEWAY_S} seconds"),
            ));
        }
        if !TOKEN_LIFETIME_RANGE_S.contains(&self.max_token_lifetime_s) {
            return Err(invalid(
                "auth.max_token_lifetime_s",
                format!(
                    "must be {}-{} seconds",
                    TOKEN_LIFETIME_RANGE_S.start(),
                    TOKEN_LIFETIME_RANGE_S.end()
                ),
            ));
        }
        if self.api_keys.iter().any(|k| k.len() < 8) {
            return Err(invalid(
                "auth.api_keys",
                "every API key needs at least 8 characters",
            ));
        }
        if self.admin_keys.iter().any(|k| k.len() < 8) {
            return Err(invalid(
                "auth.admin_keys",
                "every admin key needs at least 8 characters",
            ));
        }
        Ok(())
    }
}
