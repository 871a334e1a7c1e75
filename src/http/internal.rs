//! The internal listener's endpoint, `POST /internal/v1/deliver`: signed batches of
//! envelopes from peer nodes, handed to the local hub. Never exposed through the load
//! balancer; every request must carry a valid, fresh, unseen signature, and the body must
//! name the same sender as the signed header.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::ApiError;
use crate::actors::hub::HubHandle;
use crate::clock::now_ms;
use crate::cluster::forward;
use crate::cluster::sign::{self, Verifier};

/// Largest forward body accepted.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// State of the internal listener.
pub struct InternalState {
    pub verifier: Verifier,
    pub hub: HubHandle,
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// `POST /internal/v1/deliver`.
pub async fn deliver(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<InternalState>>,
) -> Result<HttpResponse, ApiError> {
    let sender = header(&req, sign::HDR_NODE);
    state
        .verifier
        .verify(
            sender,
            header(&req, sign::HDR_TS),
            header(&req, sign::HDR_SIG),
            &body,
            now_ms(),
        )
        .map_err(|e| {
            tracing::warn!(error = %e, peer = ?req.peer_addr(), "internal request refused");
            unauthorized(e.to_string())
        })?;
    let fwd = forward::decode(&body).map_err(|e| ApiError::bad_request("invalid_body", e))?;
    if Some(fwd.from.as_str()) != sender {
        tracing::warn!(peer = ?req.peer_addr(), "internal request names another sender");
        return Err(unauthorized(
            "body sender does not match the signed node header",
        ));
    }
    for frame in fwd.broadcasts {
        state.hub.broadcast(frame);
    }
    let missing = state.hub.deliver_reporting_missing(fwd.deliveries).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "missing": missing })))
}

/// Registers the internal routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_BODY))
        .route("/internal/v1/deliver", web::post().to(deliver))
        .route(
            "/internal/v1/healthz",
            web::get()
                .to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }),
        );
}
