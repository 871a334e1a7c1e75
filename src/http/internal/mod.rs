//! The internal listener's endpoints: `POST /internal/v1/deliver`, signed batches of
//! envelopes from peer nodes handed to the local hub, and `POST /internal/v1/presence`, a
//! peer asking which devices of a user are connected here, and `POST /internal/v1/view`,
//! the node's dashboard readings for the node that renders the cluster page. Never exposed
//! through the load balancer.
//!
//! A request is checked in the order that costs an attacker the most and the node the
//! least: the signed headers first (sender id, fresh timestamp, canonical signature; 401),
//! before a byte of the body is read; then the body, streamed into the signature's MAC,
//! refused past the cap (413, also up front from `Content-Length`) or the deadline (408);
//! then the signature and the replay cache (401); then the body's shape (400) and its
//! sender, which must be the signed node (401). Every refusal is counted and logged at a
//! bounded rate (`refusals.rs`).

mod body;
mod refusals;

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::actors::ask::{PresenceAnswer, PresenceQuery, ViewQuery};
use crate::actors::hub::HubHandle;
use crate::clock::now_ms;
use crate::cluster::forward::{self, Forward};
use crate::cluster::sign::{self, SignError, Verifier};
use crate::config::Config;
use crate::ids::NodeId;
use crate::metrics::{Counters, NodeView};

pub use self::body::{BodyError, BodyLimits};
pub use self::refusals::Refusals;

/// State of the internal listener.
pub struct InternalState {
    pub node: NodeId,
    pub counters: Arc<Counters>,
    pub verifier: Verifier,
    pub hub: HubHandle,
    /// Size and time limits of a forward's body.
    pub limits: BodyLimits,
    /// Counter and rate-limited log of refused requests.
    pub refusals: Refusals,
}

impl InternalState {
    pub fn new(cfg: &Config, node: NodeId, hub: HubHandle, counters: Arc<Counters>) -> Self {
        Self {
            node,
            counters: counters.clone(),
            verifier: Verifier::new(&cfg.cluster.secret, cfg.cluster.replay_window_ms),
            hub,
            limits: BodyLimits::from_config(cfg),
            refusals: Refusals::new(counters),
        }
    }
}

/// Why a deliver request was refused; each becomes one [`ApiError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Headers or signature: 401.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// Too large, too slow or unreadable: 413, 408, 400.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// Genuine but not a forward: 400 (the text names what is wrong, `body: …`).
    #[error("{0}")]
    Invalid(String),
    /// Genuine, but the body names another sender than the signed header: 401.
    #[error("body sender does not match the signed node header")]
    OtherSender,
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Every check of the headers and the signed body, in order; the sender and the body when
/// all of them pass.
async fn accept_signed(
    req: &HttpRequest,
    payload: web::Payload,
    state: &InternalState,
) -> Result<(String, bytes::Bytes), Refusal> {
    let signed = state.verifier.check_headers(
        header(req, sign::HDR_NODE),
        header(req, sign::HDR_TS),
        header(req, sign::HDR_SIG),
        now_ms(),
    )?;
    let mut mac = state.verifier.body_mac(&signed);
    let body = body::read(req, payload, state.limits, &mut mac).await?;
    state.verifier.finish(&signed, mac, now_ms())?;
    Ok((signed.node.to_string(), body.freeze()))
}

/// [`accept_signed`], then the body as a forward from the signed sender.
async fn accept(
    req: &HttpRequest,
    payload: web::Payload,
    state: &InternalState,
) -> Result<Forward, Refusal> {
    let (sender, body) = accept_signed(req, payload, state).await?;
    let fwd = forward::decode(&body).map_err(Refusal::Invalid)?;
    if fwd.from != sender {
        return Err(Refusal::OtherSender);
    }
    Ok(fwd)
}

/// A peer's question: [`accept_signed`], then the body as `Q`, whose `from` (read by
/// `sender_of`) must be the signed node. A refusal is counted and logged.
async fn accept_query<Q: DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    state: &InternalState,
    sender_of: fn(&Q) -> &str,
) -> Result<Q, ApiError> {
    let checked = async {
        let (sender, body) = accept_signed(req, payload, state).await?;
        let query: Q =
            serde_json::from_slice(&body).map_err(|e| Refusal::Invalid(format!("body: {e}")))?;
        if sender_of(&query) != sender {
            return Err(Refusal::OtherSender);
        }
        Ok(query)
    };
    checked.await.map_err(|refusal| {
        state.refusals.record(req.peer_addr(), &refusal);
        refusal.into()
    })
}

/// `POST /internal/v1/presence`: the devices of a user connected here, for a peer that
/// answers a cluster-wide presence.
pub async fn presence(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<Arc<InternalState>>,
) -> Result<HttpResponse, ApiError> {
    let query = accept_query(&req, payload, &state, |q: &PresenceQuery| &q.from).await?;
    let devices = state.hub.presence(query.user).await?;
    Ok(HttpResponse::Ok().json(PresenceAnswer { devices }))
}

/// `POST /internal/v1/view`: this node's dashboard readings, for a peer rendering the
/// cluster page.
pub async fn view(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<Arc<InternalState>>,
) -> Result<HttpResponse, ApiError> {
    accept_query(&req, payload, &state, |q: &ViewQuery| &q.from).await?;
    let view = NodeView::read(&state.counters, state.node.as_str(), now_ms());
    Ok(HttpResponse::Ok().json(view))
}

/// `POST /internal/v1/deliver`.
pub async fn deliver(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<Arc<InternalState>>,
) -> Result<HttpResponse, ApiError> {
    let fwd = match accept(&req, payload, &state).await {
        Ok(fwd) => fwd,
        Err(refusal) => {
            state.refusals.record(req.peer_addr(), &refusal);
            return Err(refusal.into());
        }
    };
    for frame in fwd.broadcasts {
        state.hub.broadcast(frame);
    }
    let missing = state.hub.deliver_reporting_missing(fwd.deliveries).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "missing": missing })))
}

/// Registers the internal routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/internal/v1/deliver", web::post().to(deliver))
        .route("/internal/v1/presence", web::post().to(presence))
        .route("/internal/v1/view", web::post().to(view))
        .route(
            "/internal/v1/healthz",
            web::get()
                .to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }),
        );
}
