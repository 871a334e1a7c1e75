//! `[auth]`: how connection tokens and producer API keys are checked; with its checks.

use serde::Deserialize;

use super::{invalid, ConfigError};

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
    /// Clock skew allowed on `exp`, seconds.
    pub leeway_s: u64,
    /// Producer API keys accepted as `Authorization: Bearer <key>`.
    pub api_keys: Vec<String>,
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
            api_keys: Vec::new(),
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
        if self.api_keys.iter().any(|k| k.len() < 8) {
            return Err(invalid(
                "auth.api_keys",
                "every API key needs at least 8 characters",
            ));
        }
        Ok(())
    }
}
