//! Who a connection is: connection tokens judged by the configured [`AuthMode`] through
//! one [`Authenticator`] (JWTs with a configured key or a JWKS key set, or the business's
//! own auth endpoint, or both), and the bearer keys of producers and operators.
//!
//! `jwt.rs` verifies and mints JWTs; `jwks.rs` keeps the key set fresh; `remote.rs` asks the
//! auth endpoint, through `cache.rs` (verified tokens by hash) and `breaker.rs` (fail fast
//! while the endpoint is down); `keys.rs` checks API and admin keys.

mod breaker;
mod cache;
mod jwks;
mod jwt;
mod keys;
mod remote;

use std::net::IpAddr;
use std::sync::Arc;

pub use self::breaker::Breaker;
pub use self::cache::{token_hash, TokenCache};
pub use self::jwks::{KeySet, RefreshGate};
pub use self::jwt::{is_expired, is_too_far_ahead, Claims, TokenMinter, TokenVerifier};
pub use self::keys::ApiKeys;
pub use self::remote::{AuthAnswer, ConnLimits};

use self::jwks::Jwks;
use self::remote::HttpAuth;
use crate::config::{AuthConfig, AuthMode, JwtAlgorithm};
use crate::ids::{DeviceId, UserId};
use crate::metrics::Counters;

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
    #[error("token key id is not in the key set")]
    UnknownKey,
    #[error("token refused by the auth service")]
    Refused,
    #[error("the auth service is unavailable; retry later")]
    Unavailable,
}

impl AuthError {
    /// Stable machine-readable code for JSON error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "token_missing",
            AuthError::Expired => "token_expired",
            AuthError::Unavailable => "auth_unavailable",
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
    #[error(
        "`herald token` cannot sign with a key set (auth.jwks_url): the identity provider signs"
    )]
    KeySet,
}

/// What a verified token says.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: UserId,
    pub device: Option<DeviceId>,
    /// Unix seconds after which the session must be refreshed or closed.
    pub expires_at: u64,
    /// The auth endpoint's cap on this user's sessions on this node (lower than
    /// `session.max_per_user` to take effect).
    pub max_sessions: Option<usize>,
}

impl Identity {
    /// The identity a verified token or an endpoint's answer names, its ids checked
    /// (`BadSubject`, `BadDevice`).
    fn vouched(
        user: &str,
        device: Option<&str>,
        expires_at: u64,
        max_sessions: Option<usize>,
    ) -> Result<Identity, AuthError> {
        Ok(Identity {
            user: UserId::parse(user).map_err(|_| AuthError::BadSubject)?,
            device: device
                .map(|d| DeviceId::parse(d).map_err(|_| AuthError::BadDevice))
                .transpose()?,
            expires_at,
            max_sessions,
        })
    }
}

/// Why a token is being judged: a new connection, or a ping refreshing a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Connect,
    Refresh,
}

/// One token to judge, with what the auth endpoint is told about the connection.
#[derive(Debug, Clone, Copy)]
pub struct AuthRequest<'a> {
    pub token: &'a str,
    pub device: Option<&'a str>,
    pub remote_addr: Option<IpAddr>,
    pub since: Option<u64>,
    pub purpose: Purpose,
}

impl<'a> AuthRequest<'a> {
    /// A connect with only a token (tools, tests).
    pub fn token(token: &'a str) -> Self {
        Self {
            token,
            device: None,
            remote_addr: None,
            since: None,
            purpose: Purpose::Connect,
        }
    }
}

/// Judges connection tokens the configured way.
pub struct Authenticator {
    mode: AuthMode,
    counters: Arc<Counters>,
    jwt: TokenVerifier,
    jwks: Option<Jwks>,
    http: Option<HttpAuth>,
}

thread_local! {
    /// This thread's HTTP client for the auth endpoint and the key set (no redirects: an
    /// identity answer or a key set must come from the configured URL itself).
    static CLIENT: awc::Client = awc::Client::builder().disable_redirects().finish();
}

/// Runs `f` with this thread's auth HTTP client.
fn with_client<R>(f: impl FnOnce(&awc::Client) -> R) -> R {
    CLIENT.with(f)
}

/// Locks `m`, also after a panic elsewhere poisoned it (the data stays consistent: every
/// critical section here is a plain read or replace).
fn locked<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether `token` is shaped like a JWT: three non-empty base64url parts.
pub fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl Authenticator {
    pub fn from_config(cfg: &AuthConfig, counters: Arc<Counters>) -> Result<Self, KeyError> {
        let jwks = (!cfg.jwks_url.is_empty() && cfg.jwt_algorithm != JwtAlgorithm::HS256)
            .then(|| Jwks::new(cfg, counters.clone()));
        let http = (cfg.mode != AuthMode::Jwt).then(|| HttpAuth::new(cfg, counters.clone()));
        Ok(Self {
            mode: cfg.mode,
            counters,
            jwt: TokenVerifier::from_config(cfg)?,
            jwks,
            http,
        })
    }

    /// Startup work: the first fetch of the key set. A failure is logged, not fatal: the
    /// set is fetched again on the first token that needs it.
    pub async fn start(&self) {
        if let Some(jwks) = &self.jwks {
            if let Err(e) = jwks.refresh().await {
                tracing::warn!(error = %e, "could not fetch the JWKS at startup; retrying on demand");
            }
        }
    }

    /// Judges `req.token` and says who it is for. `Unavailable` when the auth endpoint or
    /// the key set could not be reached: never an accidental accept.
    pub async fn verify(&self, req: AuthRequest<'_>) -> Result<Identity, AuthError> {
        let outcome = self.judge(req).await;
        match &outcome {
            Err(AuthError::Unavailable) => Counters::add(&self.counters.auth_unavailable, 1),
            Err(_) => Counters::add(&self.counters.auth_refused, 1),
            Ok(_) => {}
        }
        outcome
    }

    async fn judge(&self, req: AuthRequest<'_>) -> Result<Identity, AuthError> {
        if req.token.is_empty() {
            return Err(AuthError::Missing);
        }
        let by_jwt = match self.mode {
            AuthMode::Jwt => true,
            AuthMode::Http => false,
            AuthMode::JwtOrHttp => looks_like_jwt(req.token),
        };
        if by_jwt {
            return self.verify_jwt(req.token).await;
        }
        match &self.http {
            Some(http) => http.verify(&req).await,
            None => Err(AuthError::Unavailable),
        }
    }

    async fn verify_jwt(&self, token: &str) -> Result<Identity, AuthError> {
        let Some(jwks) = &self.jwks else {
            return self.jwt.verify(token);
        };
        let kid = TokenVerifier::kid(token)?.ok_or(AuthError::UnknownKey)?;
        let key = jwks.key(&kid).await?;
        self.jwt.verify_with(token, &key)
    }

    /// Whether a session whose token expires at `expires_at` must close at `now_s`.
    pub fn expired(&self, expires_at: u64, now_s: u64) -> bool {
        self.jwt.expired(expires_at, now_s)
    }
}
