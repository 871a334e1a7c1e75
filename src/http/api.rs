//! Producer REST API: ingest, batch ingest, history and presence, behind API keys.
//!
//! A 202 is answered only after the store accepted the message; dispatch happens after
//! that and never fails the request (a message that cannot be pushed now is replayed on the
//! device's next connection).

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::ApiError;
use super::ws::bearer;
use super::AppState;
use crate::actors::messages::Presence;
use crate::actors::stats::Counters;
use crate::config::IngestConfig;
use crate::ids::UserId;
use crate::store::{Accepted, NewMessage, Target};

/// Longest topic accepted, characters.
pub const MAX_TOPIC_LEN: usize = 128;
/// Longest idempotency key accepted, bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;
/// Most messages one history request returns.
pub const MAX_HISTORY_LIMIT: usize = 1000;

/// Refuses new messages while the hub is this far behind (nothing is stored).
fn check_backlog(state: &AppState) -> Result<(), ApiError> {
    let backlog = Counters::get(&state.counters.hub_backlog);
    if backlog > state.cfg.ingest.max_hub_backlog {
        Counters::add(&state.counters.overloaded, 1);
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            "the node is behind on delivery; nothing was accepted, retry shortly",
        ));
    }
    Ok(())
}

fn check_api_key(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    match bearer(req) {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "api_key_missing",
            "send the API key as `Authorization: Bearer <key>`",
        )),
        Some(k) if state.api_keys.accepts(k.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "api_key_invalid",
            "API key is not accepted",
        )),
    }
}

/// Reads the body up to the configured limit (413 past it).
async fn read_body(
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

/// One message as producers send it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageIn {
    #[serde(default)]
    to: Option<serde_json::Value>,
    #[serde(default)]
    broadcast: Option<bool>,
    #[serde(default)]
    topic: Option<String>,
    payload: Box<RawValue>,
    #[serde(default)]
    ttl_s: Option<i64>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// Parses JSON, naming the field at fault (`ttl_s: invalid type …`) when the shape is wrong.
fn parse_json<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let code = if inner.is_syntax() || inner.is_eof() {
            "invalid_json"
        } else {
            "invalid_body"
        };
        let place = if path == "." {
            "body".to_string()
        } else {
            path
        };
        ApiError::bad_request(code, format!("{place}: {inner}"))
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request("invalid_json", format!("body: {e}")))?;
    Ok(value)
}

fn invalid(field: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_field", format!("{field}: {why}"))
}

fn parse_user(field: &str, v: &serde_json::Value) -> Result<UserId, ApiError> {
    let s = v
        .as_str()
        .ok_or_else(|| invalid(field, "must be a user id string"))?;
    UserId::parse(s).map_err(|e| invalid(field, e))
}

/// Validates one message body into a [`NewMessage`].
fn validate(raw: &str, cfg: &IngestConfig) -> Result<NewMessage, ApiError> {
    let m: MessageIn = parse_json(raw)?;
    let target = match (m.to, m.broadcast) {
        (Some(_), Some(true)) => {
            return Err(invalid(
                "to",
                "give either `to` or `broadcast: true`, not both",
            ))
        }
        (None, None) | (None, Some(false)) => {
            return Err(invalid("to", "required (or `broadcast: true`)"))
        }
        (Some(_), Some(false)) => return Err(invalid("broadcast", "must be true when present")),
        (None, Some(true)) => Target::Broadcast,
        (Some(serde_json::Value::Array(list)), None) => {
            if list.is_empty() {
                return Err(invalid("to", "must not be empty"));
            }
            if list.len() > cfg.max_recipients {
                return Err(invalid(
                    "to",
                    format!("at most {} recipients", cfg.max_recipients),
                ));
            }
            let mut users = Vec::with_capacity(list.len());
            for (i, v) in list.iter().enumerate() {
                let u = parse_user(&format!("to[{i}]"), v)?;
                if !users.contains(&u) {
                    users.push(u);
                }
            }
            Target::Users(users)
        }
        (Some(v), None) => Target::Users(vec![parse_user("to", &v)?]),
    };
    if let Some(t) = &m.topic {
        if t.is_empty() || t.chars().count() > MAX_TOPIC_LEN {
            return Err(invalid(
                "topic",
                format!("must be 1-{MAX_TOPIC_LEN} characters"),
            ));
        }
    }
    let ttl_s = match m.ttl_s {
        None => cfg.default_ttl_s,
        Some(t) if t >= 1 && (t as u64) <= cfg.max_ttl_s => t as u64,
        Some(_) => {
            return Err(invalid(
                "ttl_s",
                format!("must be 1-{} seconds", cfg.max_ttl_s),
            ))
        }
    };
    if let Some(k) = &m.idempotency_key {
        if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY_LEN {
            return Err(invalid(
                "idempotency_key",
                format!("must be 1-{MAX_IDEMPOTENCY_KEY_LEN} bytes"),
            ));
        }
    }
    Ok(NewMessage {
        target,
        topic: m.topic,
        payload: m.payload,
        ttl_s,
        idempotency_key: m.idempotency_key,
    })
}

fn accepted_json(a: &Accepted) -> serde_json::Value {
    let mut v = serde_json::json!({"id": &*a.id, "recipients": a.recipients});
    if a.duplicate {
        v["duplicate"] = true.into();
    }
    v
}

fn count(state: &AppState, accepted: &[Accepted]) {
    let dup = accepted.iter().filter(|a| a.duplicate).count() as u64;
    Counters::add(&state.counters.accepted, accepted.len() as u64 - dup);
    Counters::add(&state.counters.duplicates, dup);
}

/// `POST /api/v1/messages`.
pub async fn post_message(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    check_api_key(&req, &state)?;
    check_backlog(&state)?;
    let body = read_body(&req, payload, state.cfg.ingest.max_body_bytes).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("invalid_body", "body: not UTF-8"))?;
    let msg = validate(text, &state.cfg.ingest)?;
    let mut accepted = state.appender.append(vec![msg]).await?;
    count(&state, &accepted);
    state.dispatcher.dispatch(&mut accepted);
    Ok(HttpResponse::Accepted().json(accepted_json(&accepted[0])))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchIn<'a> {
    #[serde(borrow)]
    messages: Vec<&'a RawValue>,
}

/// `POST /api/v1/messages/batch`: one store round trip for all valid items; per-item
/// results in request order. Invalid items are rejected alone; a store failure rejects the
/// whole batch with 503 (nothing accepted).
pub async fn post_batch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    check_api_key(&req, &state)?;
    check_backlog(&state)?;
    let body = read_body(&req, payload, state.cfg.ingest.max_body_bytes).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("invalid_body", "body: not UTF-8"))?;
    let batch: BatchIn = parse_json(text)?;
    if batch.messages.is_empty() {
        return Err(invalid("messages", "must not be empty"));
    }
    if batch.messages.len() > state.cfg.ingest.max_batch {
        return Err(invalid(
            "messages",
            format!("at most {} messages per batch", state.cfg.ingest.max_batch),
        ));
    }
    let mut results: Vec<Result<usize, ApiError>> = Vec::with_capacity(batch.messages.len());
    let mut valid = Vec::new();
    for (i, raw) in batch.messages.iter().enumerate() {
        match validate(raw.get(), &state.cfg.ingest) {
            Ok(m) => {
                results.push(Ok(valid.len()));
                valid.push(m);
            }
            Err(mut e) => {
                e.message = format!("messages[{i}].{}", e.message);
                results.push(Err(e));
            }
        }
    }
    let mut accepted = if valid.is_empty() {
        Vec::new()
    } else {
        state.appender.append(valid).await?
    };
    count(&state, &accepted);
    state.dispatcher.dispatch(&mut accepted);
    let n_ok = accepted.len();
    let items: Vec<serde_json::Value> = results
        .into_iter()
        .map(|r| match r {
            Ok(i) => {
                let mut v = accepted_json(&accepted[i]);
                v["status"] = 202.into();
                v
            }
            Err(e) => {
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
    let page = state.store.read(&user, since, limit as usize).await?;
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
        out.push_str(frame);
    }
    out.push_str("]}");
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(out))
}

/// `GET /api/v1/users/{user}/presence`: the user's devices connected to this node, and the
/// nodes that hold sessions of the user according to the route table.
pub async fn presence(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    check_api_key(&req, &state)?;
    let user = user_from_path(&path)?;
    let devices = state.hub.send(Presence(user.clone())).await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "hub_unavailable",
            "hub is stopping",
        )
    })?;
    // Nodes holding sessions of the user, per the route table (cluster-wide view).
    let nodes = match state.routes.lookup(std::slice::from_ref(&user)).await {
        Ok(mut n) => n.pop().unwrap_or_default(),
        Err(e) => {
            tracing::debug!(error = %e, "presence without route table");
            Vec::new()
        }
    };
    let online = !devices.is_empty() || !nodes.is_empty();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "user": user.as_str(),
        "online": online,
        "devices": devices,
        "nodes": nodes,
    })))
}
