//! `GET /ws`: authenticate, then hand the socket to a new session actor.
//!
//! Every refusal happens before the upgrade, as an HTTP status with a JSON body.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};

use super::client::CLIENT_ERRORS;
use super::error::{error_responses, ApiError, ErrorCase, TOKEN_ERRORS};
use super::{bearer, AppState};
use crate::actors::session::{Opening, ResumeFrom, WsSession};
use crate::auth::{AuthError, AuthRequest, Purpose};
use crate::ids::{parse_resume_seq, DeviceId, MAX_SEQ};
use crate::metrics::Counters;

/// What [`admit_node`] refuses.
const NODE_ERRORS: &[ErrorCase] = &[
    ErrorCase::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "draining",
        "the node is shutting down; connect to another node",
    ),
    ErrorCase::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "node_full",
        "the node holds `server.max_sessions` sessions; connect to another node",
    ),
];

/// What [`opening`] and the handshake refuse, token errors aside.
const OPENING_ERRORS: &[ErrorCase] = &[
    ErrorCase::new(
        StatusCode::BAD_REQUEST,
        "bad_query",
        "the query string cannot be parsed",
    ),
    ErrorCase::new(
        StatusCode::UNAUTHORIZED,
        "token_invalid",
        "the token is bound to another device than `?device=`",
    ),
    ErrorCase::new(
        StatusCode::BAD_REQUEST,
        "invalid_device",
        "`?device=` is not a valid device id",
    ),
    ErrorCase::new(
        StatusCode::BAD_REQUEST,
        "invalid_since",
        "`?since=` is not an integer 0-9223372036854775807",
    ),
    ErrorCase::new(
        StatusCode::BAD_REQUEST,
        "not_websocket",
        "everything else was fine but the request is not a WebSocket upgrade",
    ),
];

error_responses!(
    /// The refusals of `GET /ws`, all before the upgrade.
    UpgradeErrors: NODE_ERRORS, CLIENT_ERRORS, TOKEN_ERRORS, OPENING_ERRORS
);

/// Open a WebSocket session
///
/// Authenticates the connection token and upgrades the connection; the session's frames
/// and close codes are described in `docs/protocol.md` (section 1). Every refusal happens
/// before the upgrade, as an HTTP status with a JSON error body.
#[utoipa::path(
    get,
    path = "/ws",
    operation_id = "websocket_upgrade",
    tag = "websocket",
    security(("token" = []), ("token_query" = [])),
    params(
        ("token" = Option<String>, Query,
            description = "The connection token (JWT); wins over `Authorization: Bearer`. \
                Browsers cannot set headers on a WebSocket, so they use this"),
        ("device" = Option<DeviceId>, Query,
            description = "The device (default `default`); each device has its own ack cursor"),
        ("since" = Option<u64>, Query, maximum = 9223372036854775807_u64,
            description = "Resume point: deliver the user's messages with `seq` above it; \
                default: the device's stored ack cursor"),
        ("Upgrade" = String, Header, description = "`websocket`"),
        ("Connection" = String, Header, description = "`Upgrade`"),
        ("Sec-WebSocket-Key" = String, Header, description = "RFC 6455 handshake key"),
        ("Sec-WebSocket-Version" = String, Header, description = "`13`"),
    ),
    responses(
        (status = 101, description = "Switching Protocols: the session starts with a \
            `welcome` frame", headers(
                ("Upgrade" = String, description = "`websocket`"),
                ("Sec-WebSocket-Accept" = String, description = "RFC 6455 handshake answer"),
            )),
        UpgradeErrors,
    )
)]
pub async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    admit_node(&state)?;
    state.clients.admit_connect(&req, &state.counters)?;
    let opening = opening(&req, &state).await?;
    // The session reads the client's frames itself (see `session::inbound`): actix-ws gets
    // an empty payload and only builds the handshake response and the sink.
    let payload = body.into_inner();
    let empty = web::Payload::from_request(&req, &mut Payload::None)
        .await
        .map_err(|e| ApiError::bad_request("not_websocket", e.to_string()))?;
    let (response, sink, _unused) = actix_ws::handle(&req, empty).map_err(|e| {
        ApiError::bad_request("not_websocket", format!("websocket handshake failed: {e}"))
    })?;
    WsSession::start(opening, state.session.clone(), sink, payload);
    Ok(response)
}

/// Refuses every new session while the node drains or holds `server.max_sessions`.
fn admit_node(state: &AppState) -> Result<(), ApiError> {
    if state.draining.load(Ordering::Relaxed) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "node is draining; connect to another node",
        ));
    }
    let live = Counters::get(&state.counters.sessions_live) as usize;
    if live >= state.max_sessions {
        Counters::add(&state.counters.sessions_refused, 1);
        let refused = Counters::get(&state.counters.sessions_refused);
        // Log the first refusal and then every 1000th, not one line per connection.
        if refused % 1000 == 1 {
            tracing::warn!(
                live,
                max = state.max_sessions,
                refused,
                "node full: refusing new sessions (server.max_sessions)"
            );
        }
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "node_full",
            "this node holds its maximum number of sessions; connect to another node",
        ));
    }
    Ok(())
}

/// Who the request is (token), which device, where it resumes, and its user's session slot.
async fn opening(req: &HttpRequest, state: &AppState) -> Result<Opening, ApiError> {
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map_err(|_| ApiError::bad_request("bad_query", "query string is not valid"))?;
    let token = query
        .get("token")
        .map(String::as_str)
        .or_else(|| bearer(req))
        .ok_or(AuthError::Missing)?;
    let since = match query.get("since") {
        Some(s) => Some(parse_resume_seq(s).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_since",
                format!("since: must be an integer 0-{MAX_SEQ}"),
            )
        })?),
        None => None,
    };
    let identity = state
        .session
        .auth
        .verify(AuthRequest {
            token,
            device: query.get("device").map(String::as_str),
            remote_addr: state.clients.client_ip(req),
            since,
            purpose: Purpose::Connect,
        })
        .await?;
    let device = match (query.get("device"), identity.device) {
        (Some(q), Some(t)) if q != t.as_str() => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "token_invalid",
                "token is bound to another device",
            ))
        }
        (_, Some(t)) => t,
        (Some(q), None) => DeviceId::parse(q)
            .map_err(|e| ApiError::bad_request("invalid_device", format!("device: {e}")))?,
        (None, None) => DeviceId::default_device(),
    };
    let resume = since.map_or(ResumeFrom::Cursor, ResumeFrom::Since);
    let slot =
        state
            .clients
            .session_slot(&identity.user, identity.max_sessions, &state.counters)?;
    Ok(Opening {
        user: identity.user,
        device,
        expires_at: identity.expires_at,
        resume,
        slot,
    })
}
