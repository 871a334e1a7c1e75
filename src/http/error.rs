//! The one place HTTP errors become responses: `{"error":{"code":…,"message":…}}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use super::internal::{BodyError, Refusal};
use crate::auth::AuthError;
use crate::store::StoreError;

/// An error answered to an HTTP client; the message never carries a backend's own text.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for `Retry-After` on a 429 (1 when not set).
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_s: None,
        }
    }

    /// Sets the `Retry-After` of a 429.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_s = Some(secs);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// The JSON body, also used per item in batch answers.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status);
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            let secs = self.retry_after_s.unwrap_or(1);
            resp.insert_header(("Retry-After", secs.to_string()));
        }
        if self.code == "admin_key_missing" {
            // A browser opening the dashboard asks its user for the key.
            resp.insert_header((
                "WWW-Authenticate",
                "Basic realm=\"herald admin\", charset=\"UTF-8\"",
            ));
        }
        resp.json(self.body())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = match e {
            AuthError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "store error answered with 503");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the message store is unavailable; nothing was accepted, retry later",
        )
    }
}

impl From<crate::ingest::IngestError> for ApiError {
    fn from(e: crate::ingest::IngestError) -> Self {
        use crate::ingest::IngestError;
        match e {
            IngestError::Invalid { code, message } => ApiError::bad_request(code, message),
            IngestError::TooLarge(message) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "fanout_too_large", message)
            }
            IngestError::RateLimited { retry_after_s, .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string())
                    .retry_after(retry_after_s)
            }
            IngestError::Overloaded => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", e.to_string())
            }
            IngestError::Store(s) => s.into(),
        }
    }
}

impl From<crate::actors::hub::HubGone> for ApiError {
    fn from(_: crate::actors::hub::HubGone) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "hub_unavailable",
            "hub is stopping",
        )
    }
}

impl From<super::admin::AdminRefusal> for ApiError {
    fn from(r: super::admin::AdminRefusal) -> Self {
        use super::admin::AdminRefusal;
        match r {
            AdminRefusal::KeyMissing => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "admin_key_missing",
                "send an admin key (auth.admin_keys) as `Authorization: Bearer <key>`, or as \
                 the password of HTTP Basic auth",
            ),
            AdminRefusal::KeyInvalid => ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_key_invalid",
                "admin key is not accepted",
            ),
            AdminRefusal::Disabled => ApiError::new(
                StatusCode::FORBIDDEN,
                "stats_disabled",
                "no admin key is configured (auth.admin_keys): stats answers loopback callers only",
            ),
        }
    }
}

/// Refusals of `/internal/v1/deliver`; the message says why, never more than the caller sent.
impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let (status, code) = match &r {
            Refusal::Sign(_) | Refusal::OtherSender => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Refusal::Body(BodyError::TooLarge(_)) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
            }
            Refusal::Body(BodyError::TimedOut(_)) => (StatusCode::REQUEST_TIMEOUT, "body_timeout"),
            Refusal::Body(BodyError::Unreadable) => (StatusCode::BAD_REQUEST, "bad_body"),
            Refusal::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_body"),
        };
        ApiError::new(status, code, r.to_string())
    }
}
