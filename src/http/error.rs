//! The one place HTTP errors become responses: `{"error":{"code":…,"message":…}}`; and, for
//! the OpenAPI document, the one place those responses are described ([`ErrorCase`],
//! `error_responses!`), so the headers documented are the headers [`ApiError`] sends.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{Object, Schema, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::ToSchema;

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
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
            },
        }
    }

    /// Whether the answer carries `Retry-After`.
    fn retries_after(status: StatusCode) -> bool {
        status == StatusCode::TOO_MANY_REQUESTS
    }

    /// Whether the answer asks a browser for HTTP Basic credentials.
    fn asks_for_basic(code: &str) -> bool {
        code == "admin_key_missing"
    }
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable; each response lists the codes it can carry.
    pub code: &'static str,
    /// For humans (names the field at fault); may change.
    pub message: String,
}

/// One error a handler can answer, as the OpenAPI document lists it.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCase {
    pub status: StatusCode,
    pub code: &'static str,
    /// When it is answered.
    pub when: &'static str,
}

impl ErrorCase {
    pub const fn new(status: StatusCode, code: &'static str, when: &'static str) -> Self {
        Self { status, code, when }
    }
}

/// The OpenAPI responses of `cases`, one per status: the [`ErrorBody`] schema, a
/// description naming each code and when it is answered, one example per code, and the
/// headers [`ApiError::error_response`] adds.
pub fn documented(cases: &[&[ErrorCase]]) -> BTreeMap<String, RefOr<Response>> {
    let mut by_status: BTreeMap<StatusCode, Vec<(&str, Vec<&str>)>> = BTreeMap::new();
    for r in cases.iter().copied().flatten() {
        let codes = by_status.entry(r.status).or_default();
        match codes.iter_mut().find(|(code, _)| *code == r.code) {
            Some((_, whens)) => whens.push(r.when),
            None => codes.push((r.code, vec![r.when])),
        }
    }
    by_status
        .into_iter()
        .map(|(status, codes)| {
            let reason = status.canonical_reason().unwrap_or("Error");
            let mut description = format!("{reason}, with one of these codes:\n");
            let mut examples = Vec::with_capacity(codes.len());
            for (code, whens) in &codes {
                let when = whens.join("; ");
                description.push_str(&format!("\n- `{code}`: {when}"));
                let value = serde_json::json!({"error": {"code": code, "message": when}});
                let example = ExampleBuilder::new().summary(when).value(Some(value));
                examples.push((*code, example.build()));
            }
            let schema: RefOr<Schema> = RefOr::Ref(Ref::from_schema_name(ErrorBody::name()));
            let content = ContentBuilder::new()
                .schema(Some(schema))
                .examples_from_iter(examples)
                .build();
            let mut response = ResponseBuilder::new()
                .description(description)
                .content("application/json", content);
            if ApiError::retries_after(status) {
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(Some(Object::with_type(Type::Integer)))
                        .description(Some("whole seconds to wait before retrying"))
                        .build(),
                );
            }
            if codes.iter().any(|(code, _)| ApiError::asks_for_basic(code)) {
                response = response.header(
                    "WWW-Authenticate",
                    HeaderBuilder::new()
                        .schema(Some(Object::with_type(Type::String)))
                        .description(Some(
                            "`Basic realm=\"herald admin\"`, with `admin_key_missing`: a browser \
                             asks its user for the key",
                        ))
                        .build(),
                );
            }
            (status.as_str().to_string(), response.build().into())
        })
        .collect()
}

/// Declares `$name`, a type whose `utoipa::IntoResponses` are the [`documented`] error
/// cases of one handler, for its `#[utoipa::path(responses(...))]`.
macro_rules! error_responses {
    ($(#[doc = $doc:literal])* $name:ident: $($list:expr),+ $(,)?) => {
        $(#[doc = $doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                $crate::http::error::documented(&[$($list),+])
            }
        }
    };
}
pub(crate) use error_responses;

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status);
        if Self::retries_after(self.status) {
            let secs = self.retry_after_s.unwrap_or(1);
            resp.insert_header(("Retry-After", secs.to_string()));
        }
        if Self::asks_for_basic(self.code) {
            // A browser opening the dashboard asks its user for the key.
            resp.insert_header((
                "WWW-Authenticate",
                "Basic realm=\"herald admin\", charset=\"UTF-8\"",
            ));
        }
        resp.json(self.body())
    }
}

/// Connection tokens refused ([`AuthError::code`]).
pub const TOKEN_ERRORS: &[ErrorCase] = &[
    ErrorCase::new(
        StatusCode::UNAUTHORIZED,
        "token_missing",
        "no `?token=` and no `Authorization: Bearer` header",
    ),
    ErrorCase::new(
        StatusCode::UNAUTHORIZED,
        "token_expired",
        "`exp` is in the past (beyond `auth.leeway_s`)",
    ),
    ErrorCase::new(
        StatusCode::UNAUTHORIZED,
        "token_invalid",
        "bad signature, another algorithm, wrong `aud`/`iss`, a missing or invalid claim, \
         `nbf` ahead, `exp` more than `auth.max_token_lifetime_s` ahead, a `kid` not in the \
         key set, or refused by the auth endpoint",
    ),
    ErrorCase::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "auth_unavailable",
        "the auth endpoint or the key set could not judge the token (down, slow, its breaker \
         open); retry with backoff",
    ),
];

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = match e {
            AuthError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

/// The store failed ([`StoreError`]).
pub const STORE_ERRORS: &[ErrorCase] = &[ErrorCase::new(
    StatusCode::SERVICE_UNAVAILABLE,
    "store_unavailable",
    "the message store failed; nothing was accepted, retry later",
)];

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

/// Messages refused by ingestion ([`crate::ingest::IngestError`]), store failures aside.
pub const INGEST_ERRORS: &[ErrorCase] = &[
    ErrorCase::new(
        StatusCode::BAD_REQUEST,
        "invalid_json",
        "not JSON, or something after the JSON value",
    ),
    ErrorCase::new(
        StatusCode::BAD_REQUEST,
        "invalid_body",
        "JSON of the wrong shape: not an object, an unknown field, a missing `payload`, a \
         field of the wrong type (the message names it)",
    ),
    ErrorCase::new(
        StatusCode::BAD_REQUEST,
        "invalid_field",
        "a field breaks its rule; the message starts with the field",
    ),
    ErrorCase::new(
        StatusCode::BAD_REQUEST,
        "payload_too_deep",
        "the payload nests deeper than `ingest.max_payload_depth`",
    ),
    ErrorCase::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "fanout_too_large",
        "payload bytes times recipients over `ingest.max_fanout_bytes`; nothing was accepted",
    ),
    ErrorCase::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "the API key is over `ingest.key_requests_per_s` or `ingest.key_messages_per_s`; \
         nothing was accepted",
    ),
    ErrorCase::new(
        StatusCode::TOO_MANY_REQUESTS,
        "overloaded",
        "the node is more than `ingest.max_hub_backlog` deliveries behind; nothing was accepted",
    ),
];

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

/// The hub has stopped ([`crate::actors::hub::HubGone`]).
pub const HUB_ERRORS: &[ErrorCase] = &[ErrorCase::new(
    StatusCode::SERVICE_UNAVAILABLE,
    "hub_unavailable",
    "the node is stopping",
)];

impl From<crate::actors::hub::HubGone> for ApiError {
    fn from(_: crate::actors::hub::HubGone) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "hub_unavailable",
            "hub is stopping",
        )
    }
}

/// Operator requests refused ([`super::admin::AdminRefusal`]).
pub const ADMIN_ERRORS: &[ErrorCase] = &[
    ErrorCase::new(
        StatusCode::UNAUTHORIZED,
        "admin_key_missing",
        "admin keys are configured and the request carries none",
    ),
    ErrorCase::new(
        StatusCode::FORBIDDEN,
        "admin_key_invalid",
        "the key is not one of `auth.admin_keys`",
    ),
    ErrorCase::new(
        StatusCode::FORBIDDEN,
        "stats_disabled",
        "no admin key is configured and the caller is not on loopback",
    ),
];

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
