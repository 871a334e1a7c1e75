//! `GET /ws`: what a connection must pass before its upgrade ([`admit`]), and the route's
//! handler for requests that do not ask for an upgrade.
//!
//! Upgrade requests never reach the router: the HTTP/1 dispatcher hands them, with their
//! socket, to [`super::upgrade`], which calls [`admit`] and starts the session. Every
//! refusal happens before the upgrade, as an HTTP status with a JSON body.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use actix_http::RequestHead;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::client::CLIENT_ERRORS;
use super::error::{error_responses, ApiError, ErrorCase, TOKEN_ERRORS};
use super::{bearer_in, AppState};
use crate::actors::session::{Opening, ResumeFrom};
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
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // Upgrade requests are served by `super::upgrade`; what reaches the router does not ask
    // for one. It still gets the refusals an upgrade would (a client learns first that its
    // token is bad), and then this one.
    admit(req.head(), &state).await?;
    Err(ApiError::bad_request(
        "not_websocket",
        "websocket handshake failed: the request does not ask for a websocket upgrade",
    ))
}

/// Everything a connection must pass before its upgrade, in order: the node takes
/// sessions, the client's connect rate, the token, the query, the user's session cap, and
/// the handshake headers. The opening holds the user's session slot.
pub async fn admit(req: &RequestHead, state: &AppState) -> Result<Opening, ApiError> {
    admit_node(state)?;
    state.clients.admit_connect(req, &state.counters)?;
    let opening = opening(req, state).await?;
    actix_http::ws::verify_handshake(req).map_err(|e| {
        ApiError::bad_request("not_websocket", format!("websocket handshake failed: {e}"))
    })?;
    Ok(opening)
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
async fn opening(req: &RequestHead, state: &AppState) -> Result<Opening, ApiError> {
    let query = web::Query::<HashMap<String, String>>::from_query(req.uri.query().unwrap_or(""))
        .map_err(|_| ApiError::bad_request("bad_query", "query string is not valid"))?;
    let token = query
        .get("token")
        .map(String::as_str)
        .or_else(|| bearer_in(&req.headers))
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
