//! Producer REST API: ingest, batch ingest, history and presence, behind API keys.
//!
//! Each handler checks the key, parses the request and hands it to one service
//! ([`crate::ingest::Ingest`], the store or the hub), then answers. A 202 is answered only
//! after the store accepted the message.

use std::collections::HashMap;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::error::ApiError;
use super::{bearer, AppState};
use crate::ids::UserId;
use crate::metrics::Counters;
use crate::store::Accepted;

/// Most messages one history request returns.
pub const MAX_HISTORY_LIMIT: usize = 1000;

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

fn accepted_json(a: &Accepted) -> serde_json::Value {
    let mut v = serde_json::json!({"id": &*a.id, "recipients": a.recipients});
    if a.duplicate {
        v["duplicate"] = true.into();
    }
    v
}

fn invalid(field: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_field", format!("{field}: {why}"))
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

/// `POST /api/v1/messages`.
pub async fn post_message(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (key, body) = ingest_body(&req, payload, &state).await?;
    let accepted = state.ingest.one(key, utf8(&body)?).await?;
    Ok(HttpResponse::Accepted().json(accepted_json(&accepted)))
}

/// `POST /api/v1/messages/batch`: one store round trip for all valid items; per-item
/// results in request order. Invalid items are rejected alone; a store failure rejects the
/// whole batch with 503 (nothing accepted).
pub async fn post_batch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (key, body) = ingest_body(&req, payload, &state).await?;
    let results = state.ingest.batch(key, utf8(&body)?).await?;
    let n_ok = results.iter().filter(|r| r.is_ok()).count();
    let items: Vec<serde_json::Value> = results
        .into_iter()
        .map(|r| match r {
            Ok(a) => {
                let mut v = accepted_json(&a);
                v["status"] = 202.into();
                v
            }
            Err(e) => {
                let e = ApiError::from(e);
                let mut v = e.body();
                v["status"] = e.status.as_u16().into();
                v
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
    Ok(HttpResponse::build(status).json(serde_json::json!({
        "accepted": n_ok,
        "rejected": items.len() - n_ok,
        "results": items,
    })))
}

fn user_from_path(path: &str) -> Result<UserId, ApiError> {
    UserId::parse(path).map_err(|e| ApiError::bad_request("invalid_user", format!("user: {e}")))
}

/// `GET /api/v1/users/{user}/messages?since=&limit=`: retained messages after `since`,
/// oldest first, as the same frames a device receives.
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

/// `GET /api/v1/users/{user}/presence`: the user's devices on every node. The binding table
/// names the live nodes holding the user; each other one is asked for its devices (signed,
/// in parallel, within `cluster.forward_timeout_ms`), and a node that does not answer is
/// listed under `unreachable`.
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
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "user": user.as_str(),
        "online": online,
        "devices": devices,
        "nodes": nodes,
        "unreachable": unreachable,
    })))
}
