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

/// Who judges connection tokens (`auth.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// JWTs signed with the configured key or a key of `auth.jwks_url`.
    #[default]
    Jwt,
    /// The business's auth endpoint `auth.http.url` judges every token.
    Http,
    /// A token shaped like a JWT (three dot-separated parts) is judged as a JWT; any other
    /// token goes to the endpoint.
    JwtOrHttp,
}

/// `[auth.http]`: the business's auth endpoint (`auth.mode = "http"` or `"jwt_or_http"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpAuthConfig {
    /// `POST`ed `{"token","device","remote_addr","since","purpose"}`; answers the user.
    pub url: String,
    /// Header carrying `secret` on every call (e.g. `Authorization` with `Bearer …`).
    pub header: String,
    /// The header's value; empty = no header.
    pub secret: String,
    /// Budget of one call, ms; past it the connect answers 503 `auth_unavailable`.
    pub timeout_ms: u64,
    /// Most calls in flight at once; past it connects wait for a free slot (within the
    /// timeout).
    pub max_concurrent: usize,
    /// Most verified tokens kept (by hash); the soonest to expire go first.
    pub cache_entries: usize,
    /// Longest a verified token is trusted without asking again, s (capped by its expiry).
    pub cache_ttl_s: u64,
    /// Session lifetime when the endpoint names no expiry, s.
    pub default_ttl_s: u64,
    /// Consecutive failures (unreachable, timeout, 5xx) that open the breaker.
    pub breaker_failures: u32,
    /// How long the open breaker fails calls at once before one probe call, ms.
    pub breaker_open_ms: u64,
    /// Largest answer read from the endpoint, bytes.
    pub max_response_bytes: usize,
}

impl Default for HttpAuthConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            header: "Authorization".into(),
            secret: String::new(),
            timeout_ms: 1000,
            max_concurrent: 64,
            cache_entries: 100_000,
            cache_ttl_s: 300,
            default_ttl_s: 3600,
            breaker_failures: 5,
            breaker_open_ms: 5000,
            max_response_bytes: 16 * 1024,
        }
    }
}

/// `[auth]`: how connection tokens and producer API keys are checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Who judges connection tokens: `jwt`, `http` or `jwt_or_http`.
    pub mode: AuthMode,
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
    /// A JSON Web Key Set (RS256/ES256 keys by `kid`) instead of `jwt_public_key_file`:
    /// fetched at startup, again when a token names an unknown `kid` (at most once per
    /// `jwks_min_refresh_ms`) and when the set is older than `jwks_max_age_s`.
    pub jwks_url: String,
    pub jwks_min_refresh_ms: u64,
    pub jwks_max_age_s: u64,
    /// The auth endpoint (`mode = "http"` or `"jwt_or_http"`).
    pub http: HttpAuthConfig,
    /// Producer API keys accepted as `Authorization: Bearer <key>`.
    pub api_keys: Vec<String>,
    /// Operator keys for `GET /api/v1/stats` (`Authorization: Bearer <key>`); empty means
    /// stats answers only requests from a loopback peer address.
    pub admin_keys: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::Jwt,
            jwks_url: String::new(),
            jwks_min_refresh_ms: 10_000,
            jwks_max_age_s: 300,
            http: HttpAuthConfig::default(),
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
        if self.mode != AuthMode::Jwt {
            self.http.validate()?;
        }
        if !self.jwks_url.is_empty() {
            if self.jwt_algorithm == JwtAlgorithm::HS256 {
                return Err(invalid(
                    "auth.jwks_url",
                    "a key set holds public keys: set auth.jwt_algorithm to RS256 or ES256",
                ));
            }
            if !self.jwks_url.starts_with("http://") && !self.jwks_url.starts_with("https://") {
                return Err(invalid(
                    "auth.jwks_url",
                    "must be an http:// or https:// URL",
                ));
            }
        }
        match self.jwt_algorithm {
            JwtAlgorithm::HS256 if self.jwt_secret.len() < 16 => {
                return Err(invalid(
                    "auth.jwt_secret",
                    "HS256 needs a secret of at least 16 bytes",
                ))
            }
            JwtAlgorithm::RS256 | JwtAlgorithm::ES256
                if self.jwt_public_key_file.is_empty() && self.jwks_url.is_empty() =>
            {
                return Err(invalid(
                    "auth.jwt_public_key_file",
                    "RS256/ES256 need a PEM public key file or auth.jwks_url",
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

impl HttpAuthConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.url.starts_with("http://") && !self.url.starts_with("https://") {
            return Err(invalid(
                "auth.http.url",
                "auth.mode http and jwt_or_http need the endpoint's http:// or https:// URL",
            ));
        }
        let positive = [
            ("auth.http.timeout_ms", self.timeout_ms),
            ("auth.http.max_concurrent", self.max_concurrent as u64),
            ("auth.http.default_ttl_s", self.default_ttl_s),
            (
                "auth.http.breaker_failures",
                u64::from(self.breaker_failures),
            ),
            ("auth.http.breaker_open_ms", self.breaker_open_ms),
            (
                "auth.http.max_response_bytes",
                self.max_response_bytes as u64,
            ),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(invalid(key, "must be greater than 0"));
        }
        if self.timeout_ms > 60_000 {
            return Err(invalid("auth.http.timeout_ms", "must be at most 60000"));
        }
        if !self.secret.is_empty() && self.header.trim().is_empty() {
            return Err(invalid(
                "auth.http.header",
                "names the header that carries auth.http.secret",
            ));
        }
        Ok(())
    }
}
