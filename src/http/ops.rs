//! Operations endpoints: liveness, readiness, stats (operators only, and without internal
//! listener addresses), and the JSON 404.

use std::sync::atomic::Ordering;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::admin::check_admin;
use super::error::ApiError;
use super::AppState;
use crate::cluster::NodeInfo;
use crate::metrics::ProcessReadings;

/// `GET /healthz`: the process is alive and answering.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: backends reachable and not draining; a load balancer routes on this.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let mut problems = Vec::new();
    if state.draining.load(Ordering::Relaxed) {
        problems.push("draining".to_string());
    }
    let b = &state.backends;
    if b.store.health().await.is_err() {
        problems.push(format!("{} store unreachable", b.store.name()));
    }
    if b.bindings.health().await.is_err() {
        problems.push(format!("{} route table unreachable", b.bindings.name()));
    }
    if problems.is_empty() {
        HttpResponse::Ok().json(serde_json::json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "not_ready", "problems": problems}))
    }
}

/// A live peer as the public listener may show it: never its internal listener address.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct PublicPeer<'a> {
    pub id: &'a str,
    pub public: &'a str,
    pub started_ms: u64,
}

impl<'a> From<&'a NodeInfo> for PublicPeer<'a> {
    fn from(n: &'a NodeInfo) -> Self {
        Self {
            id: n.id.as_str(),
            public: &n.public,
            started_ms: n.started_ms,
        }
    }
}

/// `GET /api/v1/stats`: node counters as JSON, for operators (see `admin.rs`).
pub async fn stats(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    check_admin(&req, &state)?;
    let hub = state.hub.stats().await?;
    let peers = state.backends.live.all();
    let peers: Vec<PublicPeer> = peers.iter().map(PublicPeer::from).collect();
    let counters: serde_json::Map<String, serde_json::Value> = state
        .counters
        .snapshot()
        .into_iter()
        .map(|(name, v)| (name.to_string(), v.into()))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "node": state.node.as_str(),
        "uptime_s": state.started.elapsed().as_secs(),
        "store": state.backends.store.name(),
        "routes": state.backends.bindings.name(),
        "hub": hub,
        "peers": peers,
        "counters": counters,
        "process": ProcessReadings::now(),
    })))
}

/// `GET /metrics`: the node's counters in the Prometheus text format, for operators (same
/// access as stats). Names are `herald_<stats name>`, counters with `_total`.
pub async fn metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    check_admin(&req, &state)?;
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.counters.prometheus_text()))
}

/// Any unknown path.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    #[test]
    fn public_peer_view_drops_the_internal_address() {
        let n = NodeInfo {
            id: NodeId::parse("n1").unwrap(),
            internal: "10.0.0.5:8081".into(),
            public: "0.0.0.0:8080".into(),
            started_ms: 7,
        };
        let v = serde_json::to_value(PublicPeer::from(&n)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": "n1", "public": "0.0.0.0:8080", "started_ms": 7})
        );
    }
}
