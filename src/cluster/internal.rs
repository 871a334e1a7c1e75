//! The internal listener's one endpoint, `POST /internal/v1/deliver`: signed batches of
//! envelopes from peer nodes, handed to the local hub. Never exposed through the load
//! balancer; every request must carry a valid, fresh, unseen signature.

use std::sync::Arc;

use actix::Addr;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytestring::ByteString;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::sign::{self, Verifier};
use crate::actors::hub::Hub;
use crate::actors::messages::{counted_deliver, Broadcast};
use crate::actors::stats::Counters;
use crate::http::error::ApiError;
use crate::ids::{Seq, UserId};
use crate::clock::now_ms;
use crate::store::Delivery;

/// Largest forward body accepted.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// State of the internal listener.
pub struct InternalState {
    pub verifier: Verifier,
    pub hub: Addr<Hub>,
    pub counters: Arc<Counters>,
}

#[derive(Deserialize)]
struct DeliveryIn<'a> {
    user: UserId,
    seq: Seq,
    #[serde(borrow)]
    frame: &'a RawValue,
}

#[derive(Deserialize)]
struct ForwardIn<'a> {
    #[allow(dead_code)]
    from: &'a str,
    #[serde(borrow, default)]
    deliveries: Vec<DeliveryIn<'a>>,
    #[serde(borrow, default)]
    broadcasts: Vec<&'a RawValue>,
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `POST /internal/v1/deliver`.
pub async fn deliver(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<InternalState>>,
) -> Result<HttpResponse, ApiError> {
    state
        .verifier
        .verify(
            header(&req, sign::HDR_NODE),
            header(&req, sign::HDR_TS),
            header(&req, sign::HDR_SIG),
            &body,
            now_ms(),
        )
        .map_err(|e| {
            tracing::warn!(error = %e, peer = ?req.peer_addr(), "internal request refused");
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string())
        })?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("invalid_body", "body: not UTF-8"))?;
    let fwd: ForwardIn = serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request("invalid_body", format!("body: {e}")))?;
    for b in fwd.broadcasts {
        state.hub.do_send(Broadcast::counted(
            ByteString::from(b.get()),
            &state.counters,
        ));
    }
    let deliveries: Vec<Delivery> = fwd
        .deliveries
        .into_iter()
        .map(|d| Delivery {
            user: d.user,
            seq: d.seq,
            frame: ByteString::from(d.frame.get()),
        })
        .collect();
    let missing = if deliveries.is_empty() {
        Vec::new()
    } else {
        state
            .hub
            .send(counted_deliver(deliveries, &state.counters))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "hub_unavailable",
                    "hub is stopping",
                )
            })?
    };
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
