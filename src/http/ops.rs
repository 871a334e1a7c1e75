//! Operations endpoints: liveness, readiness, stats (operators only, and without internal
//! listener addresses), and the JSON 404.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::admin::check_admin;
use super::error::{error_responses, ApiError, ADMIN_ERRORS, HUB_ERRORS};
use super::AppState;
use crate::actors::hub::HubStats;
use crate::cluster::NodeInfo;
use crate::metrics::ProcessReadings;

error_responses!(
    /// The errors of `GET /api/v1/stats`.
    StatsErrors: ADMIN_ERRORS, HUB_ERRORS
);

error_responses!(
    /// The errors of the other operator endpoints: `/metrics` and the dashboard.
    AdminErrors: ADMIN_ERRORS
);

/// The answer of `/healthz` and `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` (`/healthz`); `ready` or `not_ready` (`/readyz`).
    pub status: HealthStatus,
    /// Why the node is not ready: `draining`, `<backend> store unreachable`, `<backend>
    /// route table unreachable`; absent when ready.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    Ready,
    NotReady,
}

impl Health {
    fn is(status: HealthStatus) -> Self {
        Self {
            status,
            problems: Vec::new(),
        }
    }
}

/// Liveness
///
/// The process is alive and serving HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "Alive: `{\"status\":\"ok\"}`", body = Health))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health::is(HealthStatus::Ok))
}

/// Readiness
///
/// Backends reachable and not draining; a load balancer routes on this.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready: `{\"status\":\"ready\"}`", body = Health),
        (status = 503, description = "Not ready, with the problems", body = Health),
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let mut problems = Vec::new();
    if state.draining.load(Ordering::Relaxed) {
        problems.push("draining".to_string());
    }
    let stopped = state.hub.stopped_shards();
    if stopped > 0 {
        // A shard's thread died: its users get nothing live until the node restarts.
        problems.push(format!("{stopped} hub shard(s) stopped"));
    }
    let b = &state.backends;
    if b.store.health().await.is_err() {
        problems.push(format!("{} store unreachable", b.store.name()));
    }
    if b.bindings.health().await.is_err() {
        problems.push(format!("{} route table unreachable", b.bindings.name()));
    }
    if problems.is_empty() {
        HttpResponse::Ok().json(Health::is(HealthStatus::Ready))
    } else {
        HttpResponse::ServiceUnavailable().json(Health {
            status: HealthStatus::NotReady,
            problems,
        })
    }
}

/// A live peer as the public listener may show it: never its internal listener address.
#[derive(Debug, Serialize, PartialEq, Eq, ToSchema)]
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

/// The answer of `/api/v1/stats`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats<'a> {
    pub node: &'a str,
    pub uptime_s: u64,
    /// The message store: `memory` or `mongo`.
    pub store: &'static str,
    /// The route table: `memory` or `redis`.
    pub routes: &'static str,
    pub hub: HubStats,
    /// The live nodes of the cluster (empty on a single node).
    pub peers: Vec<PublicPeer<'a>>,
    /// Every counter and gauge of the node, by its stats name.
    pub counters: BTreeMap<&'static str, u64>,
    pub process: ProcessReadings,
}

/// Node stats
///
/// The node's counters as JSON, for operators: an admin key (`auth.admin_keys`) as a
/// bearer token or the password of HTTP Basic auth; with no admin key configured, loopback
/// callers only.
#[utoipa::path(
    get,
    path = "/api/v1/stats",
    tag = "operations",
    security(("admin_key" = []), ("admin_basic" = [])),
    responses((status = 200, description = "The node's stats", body = Stats), StatsErrors)
)]
pub async fn stats(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    check_admin(&req, &state)?;
    let hub = state.hub.stats().await?;
    let peers = state.backends.live.all();
    Ok(HttpResponse::Ok().json(Stats {
        node: state.node.as_str(),
        uptime_s: state.started.elapsed().as_secs(),
        store: state.backends.store.name(),
        routes: state.backends.bindings.name(),
        hub,
        peers: peers.iter().map(PublicPeer::from).collect(),
        counters: state.counters.snapshot().into_iter().collect(),
        process: ProcessReadings::now(),
    }))
}

/// Prometheus metrics
///
/// The node's readings in the Prometheus / OpenMetrics text format, for operators (same
/// access as `/api/v1/stats`). Names are `herald_<stats name>`, counters with `_total`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security(("admin_key" = []), ("admin_basic" = [])),
    responses(
        (status = 200, description = "OpenMetrics text", body = String,
            content_type = "application/openmetrics-text"),
        AdminErrors,
    )
)]
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
