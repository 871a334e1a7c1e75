//! The cluster dashboard: `GET /dashboard`, one self-contained page built into the binary
//! (`page.html`: plain HTML, CSS, JS and SVG, nothing loaded from elsewhere), and
//! `GET /dashboard/data`, every node's readings in one JSON document, which the page asks
//! for once a second. Both behind the operator credential of `/api/v1/stats`.
//!
//! The serving node reads its own view and asks every other node for its own over the
//! signed internal listener, all at once, each within `metrics.peer_timeout_ms`. Which nodes
//! to ask is the [`roster::Roster`]'s choice: the registry's live nodes and every node seen
//! recently, so a node that stops answering shows as down.

pub mod roster;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use self::roster::Roster;
use super::admin::check_admin;
use super::error::ApiError;
use super::ops::AdminErrors;
use super::AppState;
use crate::clock::now_ms;
use crate::metrics::NodeView;

/// The page, HTML with its script and styles inline.
const PAGE: &str = include_str!("page.html");

/// The dashboard's own state on a node.
#[derive(Debug, Default)]
pub struct Dashboard {
    roster: Mutex<Roster>,
    /// How long another node gets to send its readings.
    pub peer_timeout: Duration,
}

impl Dashboard {
    pub fn new(peer_timeout: Duration) -> Self {
        Self {
            roster: Mutex::default(),
            peer_timeout,
        }
    }

    fn roster(&self) -> MutexGuard<'_, Roster> {
        self.roster.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the page shows: every node's readings, the serving node first.
#[derive(Serialize, ToSchema)]
pub struct DashboardData<'a> {
    /// When the serving node read them, unix ms.
    pub t_ms: u64,
    /// The serving node.
    pub node: &'a str,
    pub nodes: Vec<NodeEntry>,
}

/// One node on the page.
#[derive(Serialize, ToSchema)]
pub struct NodeEntry {
    node: String,
    up: bool,
    /// The node serving this page.
    #[serde(rename = "self")]
    this: bool,
    last_seen_ms: u64,
    /// Still in the node registry.
    registered: bool,
    /// Its readings when it answered.
    #[schema(value_type = Option<NodeView>)]
    view: Option<Box<RawValue>>,
    /// Why it shows as down.
    error: Option<String>,
}

/// Dashboard page
///
/// The cluster dashboard: one self-contained HTML page, for operators (same access as
/// `/api/v1/stats`; a browser sends the admin key as the password of HTTP Basic auth).
#[utoipa::path(
    get,
    path = "/dashboard",
    operation_id = "dashboard_page",
    tag = "dashboard",
    security(("admin_key" = []), ("admin_basic" = [])),
    responses(
        (status = 200, description = "The page", body = String, content_type = "text/html"),
        AdminErrors,
    )
)]
pub async fn page(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    check_admin(&req, &state)?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' data:",
        ))
        .body(PAGE))
}

/// Dashboard data
///
/// Every node's readings, this node first; the page asks for them once a second. Other
/// nodes are asked over the internal listener, each within `metrics.peer_timeout_ms`; one
/// that does not answer shows as down.
#[utoipa::path(
    get,
    path = "/dashboard/data",
    operation_id = "dashboard_data",
    tag = "dashboard",
    security(("admin_key" = []), ("admin_basic" = [])),
    responses(
        (status = 200, description = "Every node's readings", body = DashboardData),
        AdminErrors,
    )
)]
pub async fn data(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    check_admin(&req, &state)?;
    let now = now_ms();
    let me = state.node.as_str();
    let own = NodeView::read(&state.counters, me, now);
    // unwrap: a NodeView serializes to JSON infallibly
    let own = serde_json::value::to_raw_value(&own).unwrap();
    let mut nodes = vec![NodeEntry {
        node: me.to_string(),
        up: true,
        this: true,
        last_seen_ms: now,
        registered: true,
        view: Some(own),
        error: None,
    }];
    let listed: Vec<(String, String)> = state
        .backends
        .live
        .all()
        .into_iter()
        .filter(|n| n.id != state.node)
        .map(|n| (n.id.to_string(), n.internal))
        .collect();
    let targets = state.dashboard.roster().targets(&listed, now);
    let answers = match &state.backends.ask {
        Some(ask) => {
            let timeout = state.dashboard.peer_timeout;
            futures_util::future::join_all(targets.iter().map(|(_, addr)| ask.view(addr, timeout)))
                .await
        }
        None => Vec::new(),
    };
    let mut roster = state.dashboard.roster();
    for ((node, _), answer) in targets.iter().zip(answers) {
        let parsed = answer.and_then(|body| {
            let text = String::from_utf8(body.to_vec()).map_err(|e| e.to_string())?;
            RawValue::from_string(text).map_err(|e| e.to_string())
        });
        let Some(status) = roster.answered(node, parsed.is_ok(), now) else {
            continue;
        };
        let (view, error) = match parsed {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        nodes.push(NodeEntry {
            node: status.node,
            up: status.up,
            this: false,
            last_seen_ms: status.last_seen_ms,
            registered: status.registered,
            view,
            error,
        });
    }
    drop(roster);
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(DashboardData {
            t_ms: now,
            node: me,
            nodes,
        }))
}
