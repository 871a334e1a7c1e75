//! A user's side of the producer REST API, behind API keys: the messages retained for the
//! user (`GET /api/v1/users/{user}/messages`) and where the user is connected
//! (`GET /api/v1/users/{user}/presence`).

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::api::{check_api_key, API_KEY_ERRORS};
use super::error::{error_responses, ApiError, ErrorCase, HUB_ERRORS, STORE_ERRORS};
use super::AppState;
use crate::actors::hub::DevicePresence;
use crate::ids::{MessageId, NodeId, Seq, UserId};

/// Most messages one history request returns.
pub const MAX_HISTORY_LIMIT: usize = 1000;

/// What [`user_from_path`] refuses.
const USER_ERRORS: &[ErrorCase] = &[ErrorCase::new(
    StatusCode::BAD_REQUEST,
    "invalid_user",
    "`{user}` is not a valid user id",
)];

/// What the history query refuses.
const QUERY_ERRORS: &[ErrorCase] = &[
    ErrorCase::new(
        StatusCode::BAD_REQUEST,
        "bad_query",
        "the query string cannot be parsed",
    ),
    ErrorCase::new(
        StatusCode::BAD_REQUEST,
        "invalid_field",
        "`since` or `limit` is not a non-negative integer, or `limit` is not 1-1000",
    ),
];

error_responses!(
    /// The errors of `GET /api/v1/users/{user}/messages`.
    HistoryErrors: API_KEY_ERRORS, USER_ERRORS, QUERY_ERRORS, STORE_ERRORS
);

error_responses!(
    /// The errors of `GET /api/v1/users/{user}/presence`.
    PresenceErrors: API_KEY_ERRORS, USER_ERRORS, HUB_ERRORS
);

/// A page of a user's history.
// For the OpenAPI document only: the handler splices the stored frames into the answer as
// they are, rather than decoding and re-encoding them.
#[derive(ToSchema)]
pub struct HistoryPage {
    pub user: UserId,
    /// The user's newest `seq` (0: no message yet).
    #[schema(value_type = u64)]
    pub last_seq: Seq,
    /// The oldest `seq` still retained; messages below it are gone.
    #[schema(value_type = u64)]
    pub first_retained: Seq,
    /// Oldest first; broadcasts are never listed.
    pub messages: Vec<MessageFrame>,
}

/// A message frame, exactly as a device receives it over the WebSocket.
// For the OpenAPI document only, like `HistoryPage`; `frames::MessageParts` encodes it.
#[derive(ToSchema)]
pub struct MessageFrame {
    #[serde(rename = "type")]
    pub kind: FrameKind,
    pub id: MessageId,
    /// The message's `seq` for this user.
    #[schema(value_type = u64)]
    pub seq: Seq,
    pub topic: Option<String>,
    /// The producer's payload, byte for byte.
    pub payload: serde_json::Value,
    /// When the message was accepted, unix ms.
    pub ts: u64,
}

/// The `type` of a message frame.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FrameKind {
    Message,
}

/// The schema of the history's `since`: any unsigned 64-bit integer, not only the signed
/// range the `int64` format of a derived `u64` names.
pub struct SinceSeq;

impl PartialSchema for SinceSeq {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .maximum(Some(usize::try_from(u64::MAX).unwrap_or(usize::MAX)))
            .description(Some(
                "A `seq`: 0-18446744073709551615; at or beyond the user's `last_seq` the page \
                 is empty",
            ))
            .into()
    }
}

/// Where a user is connected, across the cluster.
#[derive(Debug, Serialize, ToSchema)]
pub struct Presence {
    pub user: UserId,
    /// `devices` or `nodes` is non-empty.
    pub online: bool,
    /// The user's sessions on every node that answered.
    pub devices: Vec<DevicePresence>,
    /// The live nodes holding the user according to the route table (empty when it cannot
    /// be read).
    pub nodes: Vec<NodeId>,
    /// Nodes that hold the user and did not answer in time (their devices are missing).
    pub unreachable: Vec<String>,
}

fn invalid(field: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_field", format!("{field}: {why}"))
}

fn user_from_path(path: &str) -> Result<UserId, ApiError> {
    UserId::parse(path).map_err(|e| ApiError::bad_request("invalid_user", format!("user: {e}")))
}

/// A user's messages
///
/// The user's retained, unexpired messages after `since`, oldest first, as the same frames
/// a device receives. Page with `since` = the `seq` of the last message returned.
#[utoipa::path(
    get,
    path = "/api/v1/users/{user}/messages",
    tag = "users",
    security(("api_key" = [])),
    params(
        ("user" = UserId, Path, description = "The user"),
        ("since" = inline(Option<SinceSeq>), Query,
            description = "Messages with `seq` above this (default 0)"),
        ("limit" = Option<u16>, Query, minimum = 1, maximum = 1000,
            description = "At most this many messages (default 100)"),
    ),
    responses(
        (status = 200, description = "The page", body = HistoryPage),
        HistoryErrors,
    )
)]
pub async fn history(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    check_api_key(&req, &state)?;
    let user = user_from_path(&path)?;
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map_err(|_| ApiError::bad_request("bad_query", "query string is not valid"))?;
    let num = |name: &str, default: u64| -> Result<u64, ApiError> {
        match query.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| invalid(name, "must be a non-negative integer")),
        }
    };
    let since = num("since", 0)?;
    let limit = num("limit", 100)?;
    if limit == 0 || limit as usize > MAX_HISTORY_LIMIT {
        return Err(invalid("limit", format!("must be 1-{MAX_HISTORY_LIMIT}")));
    }
    let page = state
        .backends
        .store
        .read(&user, since, limit as usize)
        .await?;
    // The stored frames are already JSON: splice them in rather than re-encoding.
    let mut out =
        String::with_capacity(128 + page.messages.iter().map(|m| m.1.len() + 1).sum::<usize>());
    out.push_str(r#"{"user":"#);
    out.push_str(&serde_json::to_string(user.as_str()).unwrap_or_default());
    out.push_str(&format!(
        r#","last_seq":{},"first_retained":{},"messages":["#,
        page.last_seq, page.first_retained
    ));
    for (i, (_, frame)) in page.messages.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        frame.write_to(&mut out);
    }
    out.push_str("]}");
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(out))
}

/// Where a user is connected
///
/// The user's devices on every node. The route table names the live nodes holding the user;
/// each other one is asked for its devices (in parallel, within
/// `cluster.forward_timeout_ms`), and a node that does not answer is listed under
/// `unreachable`.
#[utoipa::path(
    get,
    path = "/api/v1/users/{user}/presence",
    tag = "users",
    security(("api_key" = [])),
    params(("user" = UserId, Path, description = "The user")),
    responses(
        (status = 200, description = "The user's devices", body = Presence),
        PresenceErrors,
    )
)]
pub async fn presence(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    check_api_key(&req, &state)?;
    let user = user_from_path(&path)?;
    let mut devices = state.hub.presence(user.clone()).await?;
    let b = &state.backends;
    let nodes = match b.bindings.lookup(std::slice::from_ref(&user)).await {
        Ok(mut n) => {
            let mut nodes = n.pop().unwrap_or_default();
            b.live.retain_live(&mut nodes);
            nodes
        }
        Err(e) => {
            tracing::debug!(error = %e, "presence without binding table");
            Vec::new()
        }
    };
    let mut unreachable = Vec::new();
    if let Some(ask) = &b.ask {
        let peers: Vec<_> = nodes
            .iter()
            .filter(|n| **n != state.node)
            .filter_map(|n| b.live.get(n))
            .collect();
        let answers =
            futures_util::future::join_all(peers.iter().map(|p| ask.presence(&p.internal, &user)))
                .await;
        for (peer, answer) in peers.iter().zip(answers) {
            match answer {
                Ok(mut d) => devices.append(&mut d),
                Err(e) => {
                    tracing::debug!(node = %peer.id, error = %e, "presence: peer did not answer");
                    unreachable.push(peer.id.to_string());
                }
            }
        }
    }
    let online = !devices.is_empty() || !nodes.is_empty();
    Ok(HttpResponse::Ok().json(Presence {
        user,
        online,
        devices,
        nodes,
        unreachable,
    }))
}
