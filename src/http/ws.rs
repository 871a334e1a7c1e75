//! `GET /ws`: authenticate, then hand the socket to a new session actor.
//!
//! Every refusal happens before the upgrade, as an HTTP status with a JSON body.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};

use super::error::ApiError;
use super::{bearer, AppState};
use crate::actors::session::{Opening, ResumeFrom, WsSession};
use crate::auth::{AuthError, AuthRequest, Purpose};
use crate::ids::{parse_resume_seq, DeviceId, MAX_SEQ};
use crate::metrics::Counters;

/// Upgrades an authenticated request to a WebSocket session.
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
