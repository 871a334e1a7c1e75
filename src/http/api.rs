//! Producer REST API, ingest side: one message and a batch, behind API keys (the API key
//! check itself lives here too; a user's history and presence are in `users.rs`).
//!
//! Each handler checks the key, parses the request and hands it to [`crate::ingest::Ingest`],
//! then answers. A 202 is answered only after the store accepted the message.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Serialize;
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{OneOfBuilder, Schema};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{IntoResponses, ToSchema};

use super::error::{
    documented, error_responses, ApiError, ErrorBody, ErrorCase, INGEST_ERRORS, STORE_ERRORS,
};
use super::{bearer, AppState};
use crate::ids::MessageId;
use crate::ingest::validate::MessageIn;
use crate::ingest::BatchIn;
use crate::metrics::Counters;
use crate::store::Accepted;

/// What `check_api_key` refuses.
pub const API_KEY_ERRORS: &[ErrorCase] = &[
    ErrorCase::new(
        StatusCode::UNAUTHORIZED,
        "api_key_missing",
        "no `Authorization: Bearer <api key>` header",
    ),
    ErrorCase::new(
        StatusCode::FORBIDDEN,
        "api_key_invalid",
        "the key is not one of `auth.api_keys`",
    ),
];

/// What reading a request body ([`read_body`], [`utf8`]) refuses.
const BODY_ERRORS: &[ErrorCase] = &[
    ErrorCase::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "the body (declared or read) is over `ingest.max_body_bytes`",
    ),
    ErrorCase::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        "the body did not arrive within `ingest.body_timeout_ms`; nothing was accepted",
    ),
    ErrorCase::new(
        StatusCode::BAD_REQUEST,
        "bad_body",
        "the body could not be read (connection error mid-body)",
    ),
    ErrorCase::new(
        StatusCode::BAD_REQUEST,
        "invalid_body",
        "the body is not UTF-8",
    ),
];

error_responses!(
    /// The errors of `POST /api/v1/messages`.
    PostMessageErrors: API_KEY_ERRORS, BODY_ERRORS, INGEST_ERRORS, STORE_ERRORS
);

/// The errors of `POST /api/v1/messages/batch` as a whole. Its 400 is also the
/// [`BatchAnswer`] of a batch whose every item was refused.
pub struct BatchErrors;

impl IntoResponses for BatchErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut responses = documented(&[API_KEY_ERRORS, BODY_ERRORS, INGEST_ERRORS, STORE_ERRORS]);
        if let Some(RefOr::T(bad)) = responses.get_mut("400") {
            bad.description
                .push_str("\n\nOr, when every item was refused, the `BatchAnswer` of the items.");
            if let Some(RefOr::T(json)) = bad.content.get_mut("application/json") {
                let schema: Schema = OneOfBuilder::new()
                    .item(Ref::from_schema_name(BatchAnswer::name()))
                    .item(Ref::from_schema_name(ErrorBody::name()))
                    .into();
                json.schema = Some(schema.into());
            }
        }
        responses
    }
}

/// A message accepted: the `202` answer, and each accepted item of a batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedBody {
    /// The message's id, one per message, shared by all its recipients.
    #[schema(value_type = MessageId)]
    pub id: Arc<str>,
    /// Distinct users in `to` (0 for a broadcast).
    pub recipients: usize,
    /// Present (true) when the idempotency key was used before: `id` and `recipients` are
    /// the first message's, and nothing was stored or delivered.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[schema(required = false)]
    pub duplicate: bool,
}

impl From<&Accepted> for AcceptedBody {
    fn from(a: &Accepted) -> Self {
        Self {
            id: a.id.clone(),
            recipients: a.recipients,
            duplicate: a.duplicate,
        }
    }
}

/// The answer to a batch: one result per item, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchAnswer {
    pub accepted: usize,
    pub rejected: usize,
    pub results: Vec<BatchItem>,
}

/// One item's result in a batch.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum BatchItem {
    /// Accepted: `status` 202.
    Accepted {
        #[serde(flatten)]
        accepted: AcceptedBody,
        /// Always `202`.
        status: u16,
    },
    /// Refused alone, with the error a single message would get (its message prefixed by
    /// `messages[<index>].`) and that error's `status`.
    Refused {
        #[serde(flatten)]
        body: ErrorBody,
        status: u16,
    },
}

/// The index of the request's API key among `auth.api_keys` (401/403 without a valid one).
pub(super) fn check_api_key(req: &HttpRequest, state: &AppState) -> Result<usize, ApiError> {
    match bearer(req) {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "api_key_missing",
            "send the API key as `Authorization: Bearer <key>`",
        )),
        Some(k) => state.api_keys.find(k.as_bytes()).ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "api_key_invalid",
                "API key is not accepted",
            )
        }),
    }
}

/// Reads the body up to `limit` bytes (413 past it) within `deadline` (408 after it).
async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    deadline: Duration,
) -> Result<web::BytesMut, ApiError> {
    tokio::time::timeout(deadline, read_body_bounded(req, payload, limit))
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "request body did not arrive within {} ms (ingest.body_timeout_ms)",
                    deadline.as_millis()
                ),
            ))
        })
}

async fn read_body_bounded(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body is over the {limit}-byte limit"),
        )
    };
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|_| ApiError::bad_request("bad_body", "request body could not be read"))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Checks the key and admission, then reads the body; answers it with the key's index.
async fn ingest_body(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<(usize, web::BytesMut), ApiError> {
    let key = check_api_key(req, state)?;
    state.ingest.admit(key)?;
    let body = read_body(
        req,
        payload,
        state.ingest.max_body_bytes(),
        state.ingest.body_timeout(),
    )
    .await
    .inspect_err(|e| {
        if e.code == "body_timeout" {
            Counters::add(&state.counters.body_timeouts, 1);
        }
    })?;
    Ok((key, body))
}

fn utf8(body: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|_| ApiError::bad_request("invalid_body", "body: not UTF-8"))
}

/// Send a message
///
/// Stores the message, answers 202, then pushes it to every connected device of each
/// recipient (offline devices get it on their next connection). `broadcast: true` pushes it
/// to every connected session instead, live only.
#[utoipa::path(
    post,
    path = "/api/v1/messages",
    tag = "messages",
    security(("api_key" = [])),
    request_body(content = MessageIn, description = "One message"),
    responses(
        (status = 202, description = "Stored (or a known idempotency key)", body = AcceptedBody),
        PostMessageErrors,
    )
)]
pub async fn post_message(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (key, body) = ingest_body(&req, payload, &state).await?;
    let accepted = state.ingest.one(key, utf8(&body)?).await?;
    Ok(HttpResponse::Accepted().json(AcceptedBody::from(&accepted)))
}

/// Send a batch of messages
///
/// One store round trip for all valid items; per-item results in request order. Invalid
/// items are refused alone; a store failure refuses the whole batch with 503 (nothing
/// accepted). 202 when every item was accepted, 207 when some were, 400 when none was.
#[utoipa::path(
    post,
    path = "/api/v1/messages/batch",
    tag = "messages",
    security(("api_key" = [])),
    request_body(content = BatchIn, description = "Up to `ingest.max_batch` messages"),
    responses(
        (status = 202, description = "Every item accepted", body = BatchAnswer),
        (status = 207, description = "Some items accepted, some refused", body = BatchAnswer),
        BatchErrors,
    )
)]
pub async fn post_batch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (key, body) = ingest_body(&req, payload, &state).await?;
    let results = state.ingest.batch(key, utf8(&body)?).await?;
    let n_ok = results.iter().filter(|r| r.is_ok()).count();
    let items: Vec<BatchItem> = results
        .into_iter()
        .map(|r| match r {
            Ok(a) => BatchItem::Accepted {
                accepted: AcceptedBody::from(&a),
                status: StatusCode::ACCEPTED.as_u16(),
            },
            Err(e) => {
                let e = ApiError::from(e);
                BatchItem::Refused {
                    body: e.body(),
                    status: e.status.as_u16(),
                }
            }
        })
        .collect();
    let status = if n_ok == items.len() {
        StatusCode::ACCEPTED
    } else if n_ok == 0 {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::MULTI_STATUS
    };
    Ok(HttpResponse::build(status).json(BatchAnswer {
        accepted: n_ok,
        rejected: items.len() - n_ok,
        results: items,
    }))
}
