//! Who a request comes from, and the per-connection admission limits of the public
//! listener: the client address (through trusted proxies), the connect rate per address
//! and the session cap per user.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use actix_http::RequestHead;
use actix_web::http::StatusCode;

use super::error::{ApiError, ErrorCase};
use crate::config::{IpNet, ServerConfig};
use crate::ids::UserId;
use crate::limits::{retry_after_secs, RateLimiter, SessionSlot, UserSessions};
use crate::metrics::Counters;

/// What [`ClientLimits`] refuses.
pub const CLIENT_ERRORS: &[ErrorCase] = &[
    ErrorCase::new(
        StatusCode::TOO_MANY_REQUESTS,
        "connect_rate_limited",
        "the client address opened more than `server.connect_rate_per_ip` connections per \
         second (bursts of `server.connect_burst_per_ip`)",
    ),
    ErrorCase::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_sessions",
        "the user already holds `session.max_per_user` sessions on this node",
    ),
];

/// Client addresses tracked by the connect-rate limiter at most.
const MAX_TRACKED_ADDRESSES: usize = 100_000;

/// The public listener's per-client limits.
pub struct ClientLimits {
    connects: RateLimiter<IpAddr>,
    limit_loopback: bool,
    trusted: Vec<IpNet>,
    sessions: Arc<UserSessions>,
}

impl ClientLimits {
    pub fn new(server: &ServerConfig, max_sessions_per_user: usize) -> Self {
        Self {
            connects: RateLimiter::new(
                f64::from(server.connect_rate_per_ip),
                f64::from(server.connect_burst_per_ip),
                MAX_TRACKED_ADDRESSES,
            ),
            limit_loopback: server.limit_loopback,
            trusted: server.trusted_proxies.clone(),
            sessions: UserSessions::new(max_sessions_per_user),
        }
    }

    /// The client's address: the peer, or behind trusted proxies the right-most address of
    /// `X-Forwarded-For` that is not one of them.
    pub fn client_ip(&self, req: &RequestHead) -> Option<IpAddr> {
        let peer = req.peer_addr?.ip();
        let xff = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        Some(client_ip(peer, xff, &self.trusted))
    }

    /// Admits one more WebSocket upgrade from the request's client (429 past its rate).
    pub fn admit_connect(&self, req: &RequestHead, counters: &Counters) -> Result<(), ApiError> {
        let Some(ip) = self.client_ip(req) else {
            return Ok(());
        };
        if ip.is_loopback() && !self.limit_loopback {
            return Ok(());
        }
        self.connects.check(&ip, 1, Instant::now()).map_err(|wait| {
            Counters::add(&counters.connects_rate_limited, 1);
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "connect_rate_limited",
                "too many connections from this address; retry later",
            )
            .retry_after(retry_after_secs(wait))
        })
    }

    /// A place for one more session of `user` on this node (429 past the cap).
    pub fn session_slot(
        &self,
        user: &UserId,
        cap: Option<usize>,
        counters: &Counters,
    ) -> Result<SessionSlot, ApiError> {
        let slot = match cap {
            Some(cap) => self.sessions.acquire_within(user, cap),
            None => self.sessions.acquire(user),
        };
        slot.ok_or_else(|| {
            Counters::add(&counters.sessions_refused_per_user, 1);
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_sessions",
                "this user holds the most sessions allowed on this node \
                 (session.max_per_user); close one first",
            )
        })
    }
}

/// The client behind `peer`: when `peer` is a trusted proxy, the right-most address of
/// `xff` that is not trusted (each proxy appends the address it saw); else `peer`.
pub fn client_ip(peer: IpAddr, xff: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    for hop in xff.unwrap_or_default().rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(ip) => client = ip,
            Ok(ip) => return ip,
            // An unreadable hop: trust nothing further left of it.
            Err(_) => return client,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let xff = Some("203.0.113.9, 198.51.100.7, 10.1.2.3");
        assert_eq!(client_ip(ip("192.0.2.1"), xff, &trusted), ip("192.0.2.1"));
        assert_eq!(client_ip(ip("10.0.0.5"), xff, &trusted), ip("198.51.100.7"));
        assert_eq!(client_ip(ip("10.0.0.5"), None, &trusted), ip("10.0.0.5"));
        assert_eq!(
            client_ip(ip("10.0.0.5"), Some("junk, 10.1.1.1"), &trusted),
            ip("10.1.1.1")
        );
        assert_eq!(client_ip(ip("10.0.0.5"), xff, &[]), ip("10.0.0.5"));
    }
}
