//! The one table of the node's readings: name, kind and help of every [`Counters`] field.

use std::sync::atomic::AtomicU64;

use super::Counters;

/// Whether a reading only grows (a counter) or goes up and down (a gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One reading of [`Counters`]: its name (as `/api/v1/stats` shows it; `/metrics` shows
/// `herald_<name>`, counters with `_total`), kind and help text.
pub struct Reading {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub of: fn(&Counters) -> &AtomicU64,
}

/// Every reading, in one place: both `/api/v1/stats` and `/metrics` are built from it.
pub const READINGS: &[Reading] = &[
    Reading {
        name: "delivered",
        kind: Kind::Counter,
        help: "Frames handed to session sockets (messages and broadcasts).",
        of: |c| &c.delivered,
    },
    Reading {
        name: "accepted",
        kind: Kind::Counter,
        help: "Messages accepted by ingestion (2xx).",
        of: |c| &c.accepted,
    },
    Reading {
        name: "duplicates",
        kind: Kind::Counter,
        help: "Idempotent retries answered with the first id.",
        of: |c| &c.duplicates,
    },
    Reading {
        name: "slow_consumers",
        kind: Kind::Counter,
        help: "Sessions closed with 4002.",
        of: |c| &c.slow_consumers,
    },
    Reading {
        name: "heartbeat_timeouts",
        kind: Kind::Counter,
        help: "Sessions closed with 4008.",
        of: |c| &c.heartbeat_timeouts,
    },
    Reading {
        name: "sessions_opened",
        kind: Kind::Counter,
        help: "Sessions opened since start.",
        of: |c| &c.sessions_opened,
    },
    Reading {
        name: "sessions_live",
        kind: Kind::Gauge,
        help: "Sessions alive now (opened minus stopped).",
        of: |c| &c.sessions_live,
    },
    Reading {
        name: "sessions_refused",
        kind: Kind::Counter,
        help: "Connections refused because the node was at `server.max_sessions`.",
        of: |c| &c.sessions_refused,
    },
    Reading {
        name: "replayed",
        kind: Kind::Counter,
        help: "Messages replayed from the store on connect or gap fill.",
        of: |c| &c.replayed,
    },
    Reading {
        name: "skipped",
        kind: Kind::Counter,
        help: "Seqs sessions moved past without sending, on store evidence that they will never be stored (expired, or an append that gave up).",
        of: |c| &c.skipped,
    },
    Reading {
        name: "truncated",
        kind: Kind::Counter,
        help: "Seqs sessions moved past with a `history_truncated` frame (replay limit, retention).",
        of: |c| &c.truncated,
    },
    Reading {
        name: "forwarded",
        kind: Kind::Counter,
        help: "Envelopes a peer node acknowledged.",
        of: |c| &c.forwarded,
    },
    Reading {
        name: "forward_failures",
        kind: Kind::Counter,
        help: "Envelopes dropped after failed forwards or a full peer queue.",
        of: |c| &c.forward_failures,
    },
    Reading {
        name: "route_errors",
        kind: Kind::Counter,
        help: "Route-table calls that failed (Redis down or slow).",
        of: |c| &c.route_errors,
    },
    Reading {
        name: "hub_backlog",
        kind: Kind::Gauge,
        help: "Deliveries handed to the hub and not yet fanned out (a broadcast counts once per session): ingestion answers 429 above `ingest.max_hub_backlog`.",
        of: |c| &c.hub_backlog,
    },
    Reading {
        name: "connects_rate_limited",
        kind: Kind::Counter,
        help: "WebSocket upgrades refused with 429 `connect_rate_limited` (per client address).",
        of: |c| &c.connects_rate_limited,
    },
    Reading {
        name: "sessions_refused_per_user",
        kind: Kind::Counter,
        help: "WebSocket upgrades refused with 429 `too_many_sessions` (per user).",
        of: |c| &c.sessions_refused_per_user,
    },
    Reading {
        name: "requests_rate_limited",
        kind: Kind::Counter,
        help: "Producer requests refused with 429 `rate_limited` (per API key).",
        of: |c| &c.requests_rate_limited,
    },
    Reading {
        name: "fanout_refused",
        kind: Kind::Counter,
        help: "Messages refused with 413 `fanout_too_large` (payload x recipients over budget).",
        of: |c| &c.fanout_refused,
    },
    Reading {
        name: "payload_too_deep",
        kind: Kind::Counter,
        help: "Messages refused with 400 `payload_too_deep`.",
        of: |c| &c.payload_too_deep,
    },
    Reading {
        name: "body_timeouts",
        kind: Kind::Counter,
        help: "Producer requests whose body did not arrive within `ingest.body_timeout_ms` (408).",
        of: |c| &c.body_timeouts,
    },
    Reading {
        name: "overloaded",
        kind: Kind::Counter,
        help: "Requests refused with 429 because of the hub backlog.",
        of: |c| &c.overloaded,
    },
    Reading {
        name: "position_catchups",
        kind: Kind::Counter,
        help: "Sessions the periodic position check found behind the store and made read what they missed: live pushes that were lost (or, rarely, still on their way).",
        of: |c| &c.position_catchups,
    },
    Reading {
        name: "peers_resolved",
        kind: Kind::Counter,
        help: "Nodes a binding named before this node's live-peer view knew them, found alive by a lookup and forwarded to.",
        of: |c| &c.peers_resolved,
    },
    Reading {
        name: "position_check_errors",
        kind: Kind::Counter,
        help: "Position checks whose store read failed.",
        of: |c| &c.position_check_errors,
    },
    Reading {
        name: "internal_refused",
        kind: Kind::Counter,
        help: "Requests to the internal listener's `/internal/v1/deliver` refused (bad or replayed signature, body too large or too slow, unreadable body, sender mismatch).",
        of: |c| &c.internal_refused,
    },
    Reading {
        name: "auth_refused",
        kind: Kind::Counter,
        help: "Connection tokens refused (401), in every auth mode.",
        of: |c| &c.auth_refused,
    },
    Reading {
        name: "auth_unavailable",
        kind: Kind::Counter,
        help: "Connects and refreshes answered 503 auth_unavailable (endpoint or key set down).",
        of: |c| &c.auth_unavailable,
    },
    Reading {
        name: "auth_cache_hits",
        kind: Kind::Counter,
        help: "Tokens the auth endpoint had verified, answered from the cache.",
        of: |c| &c.auth_cache_hits,
    },
    Reading {
        name: "auth_coalesced",
        kind: Kind::Counter,
        help: "Verifications that waited for an identical one in flight instead of calling.",
        of: |c| &c.auth_coalesced,
    },
    Reading {
        name: "auth_breaker_rejected",
        kind: Kind::Counter,
        help: "Auth endpoint calls failed at once by the open breaker.",
        of: |c| &c.auth_breaker_rejected,
    },
    Reading {
        name: "auth_breaker_open",
        kind: Kind::Gauge,
        help: "1 while the auth endpoint's breaker is open.",
        of: |c| &c.auth_breaker_open,
    },
    Reading {
        name: "jwks_refresh_limited",
        kind: Kind::Counter,
        help: "JWKS refreshes an unknown kid asked for that the rate limit refused.",
        of: |c| &c.jwks_refresh_limited,
    },
];
