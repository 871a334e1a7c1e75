//! Operations endpoints: liveness, readiness, stats, and the JSON 404.

use std::sync::atomic::Ordering;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use super::error::ApiError;
use super::AppState;
use crate::metrics::Counters;

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

/// `GET /api/v1/stats`: node counters as JSON.
pub async fn stats(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let hub = state.hub.stats().await?;
    let c = &state.counters;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "node": state.node.as_str(),
        "uptime_s": state.started.elapsed().as_secs(),
        "store": state.backends.store.name(),
        "routes": state.backends.bindings.name(),
        "hub": hub,
        "peers": state.backends.live.all(),
        "counters": {
            "accepted": Counters::get(&c.accepted),
            "duplicates": Counters::get(&c.duplicates),
            "delivered": Counters::get(&c.delivered),
            "replayed": Counters::get(&c.replayed),
            "skipped": Counters::get(&c.skipped),
            "truncated": Counters::get(&c.truncated),
            "sessions_opened": Counters::get(&c.sessions_opened),
            "sessions_live": Counters::get(&c.sessions_live),
            "sessions_refused": Counters::get(&c.sessions_refused),
            "slow_consumers": Counters::get(&c.slow_consumers),
            "heartbeat_timeouts": Counters::get(&c.heartbeat_timeouts),
            "forwarded": Counters::get(&c.forwarded),
            "forward_failures": Counters::get(&c.forward_failures),
            "route_errors": Counters::get(&c.route_errors),
            "hub_backlog": Counters::get(&c.hub_backlog),
            "overloaded": Counters::get(&c.overloaded),
            "connects_rate_limited": Counters::get(&c.connects_rate_limited),
            "sessions_refused_per_user": Counters::get(&c.sessions_refused_per_user),
            "requests_rate_limited": Counters::get(&c.requests_rate_limited),
            "body_timeouts": Counters::get(&c.body_timeouts),
            "position_catchups": Counters::get(&c.position_catchups),
            "position_check_errors": Counters::get(&c.position_check_errors),
            "peers_resolved": Counters::get(&c.peers_resolved),
            "internal_refused": Counters::get(&c.internal_refused),
        }
    })))
}

/// Any unknown path.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint",
    ))
}
