//! The business's auth endpoint (`auth.mode = "http"`): a token goes to `auth.http.url`,
//! which answers who it is for. Verified tokens are cached by hash ([`TokenCache`]),
//! identical verifications in flight are coalesced into one call, calls are bounded in time
//! and number, and a [`Breaker`] fails them fast while the endpoint is down. A refusal
//! (401/403) is a 401 to the client; anything else that is not an answer is `Unavailable`
//! (503 `auth_unavailable`), never an accept.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, Semaphore};

use super::{
    is_too_far_ahead, locked, with_client, AuthError, AuthRequest, Breaker, Identity, TokenCache,
};
use crate::clock::now_s;
use crate::config::{AuthConfig, HttpAuthConfig};
use crate::metrics::Counters;

/// What the endpoint answers with 200 (documented in docs/protocol.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthAnswer {
    /// The user the token belongs to.
    pub user: String,
    /// Binds the connection to this device.
    #[serde(default)]
    pub device: Option<String>,
    /// Unix seconds the session may last (a ping with a token extends it).
    #[serde(default)]
    pub expires_at: Option<u64>,
    #[serde(default)]
    pub limits: Option<ConnLimits>,
}

/// Per-connection limits the endpoint may set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnLimits {
    /// This user's sessions on this node, at most (below `session.max_per_user`).
    #[serde(default)]
    pub max_sessions: Option<usize>,
}

/// What Herald posts to the endpoint.
#[derive(Serialize)]
struct Call<'a> {
    token: &'a str,
    device: Option<&'a str>,
    remote_addr: Option<String>,
    since: Option<u64>,
    purpose: super::Purpose,
}

type Outcome = Result<Identity, AuthError>;

pub(super) struct HttpAuth {
    cfg: HttpAuthConfig,
    max_lifetime_s: u64,
    cache: Mutex<TokenCache>,
    /// Verifications under way, by token hash: who else waits for each.
    inflight: Mutex<HashMap<[u8; 32], Vec<oneshot::Sender<Outcome>>>>,
    slots: Semaphore,
    breaker: Mutex<Breaker>,
    counters: Arc<Counters>,
}

/// Removes its verification from the in-flight table when dropped (also when the caller
/// gave up), so waiters never wait on a call nobody makes.
struct Leader<'a> {
    auth: &'a HttpAuth,
    key: [u8; 32],
}

impl Leader<'_> {
    fn finish(self, outcome: &Outcome) {
        let waiters = locked(&self.auth.inflight)
            .remove(&self.key)
            .unwrap_or_default();
        for w in waiters {
            let _ = w.send(outcome.clone());
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        locked(&self.auth.inflight).remove(&self.key);
    }
}

impl HttpAuth {
    pub(super) fn new(cfg: &AuthConfig, counters: Arc<Counters>) -> Self {
        let h = &cfg.http;
        Self {
            cfg: h.clone(),
            max_lifetime_s: cfg.max_token_lifetime_s,
            cache: Mutex::new(TokenCache::new(h.cache_entries)),
            inflight: Mutex::default(),
            slots: Semaphore::new(h.max_concurrent),
            breaker: Mutex::new(Breaker::new(
                h.breaker_failures,
                Duration::from_millis(h.breaker_open_ms),
            )),
            counters,
        }
    }

    pub(super) async fn verify(&self, req: &AuthRequest<'_>) -> Outcome {
        let key = super::token_hash(req.token);
        if let Some(id) = locked(&self.cache).get(&key, now_s()) {
            Counters::add(&self.counters.auth_cache_hits, 1);
            return Ok(id);
        }
        let waiting = {
            let mut inflight = locked(&self.inflight);
            match inflight.get_mut(&key) {
                Some(waiters) => {
                    let (tx, rx) = oneshot::channel();
                    waiters.push(tx);
                    Some(rx)
                }
                None => {
                    inflight.insert(key, Vec::new());
                    None
                }
            }
        };
        if let Some(rx) = waiting {
            Counters::add(&self.counters.auth_coalesced, 1);
            return rx.await.unwrap_or(Err(AuthError::Unavailable));
        }
        let leader = Leader { auth: self, key };
        let outcome = self.call(req).await;
        if let Ok(id) = &outcome {
            let until = id
                .expires_at
                .min(now_s().saturating_add(self.cfg.cache_ttl_s));
            locked(&self.cache).insert(key, id.clone(), until);
        }
        leader.finish(&outcome);
        outcome
    }

    /// One call, inside the breaker, a concurrency slot and the time budget.
    async fn call(&self, req: &AuthRequest<'_>) -> Outcome {
        let started = Instant::now();
        if !locked(&self.breaker).allow(started) {
            Counters::add(&self.counters.auth_breaker_rejected, 1);
            return Err(AuthError::Unavailable);
        }
        let budget = Duration::from_millis(self.cfg.timeout_ms);
        let answer = tokio::time::timeout(budget, async {
            let _slot = self
                .slots
                .acquire()
                .await
                .map_err(|_| "closed".to_string())?;
            self.post(req, budget).await
        })
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
        let ok = !matches!(answer, Err(_) | Ok(Reply::Failed(_)));
        self.counters
            .ops
            .auth
            .op(b"verify_http")
            .observe(started, ok);
        {
            let mut breaker = locked(&self.breaker);
            if ok {
                breaker.success();
            } else {
                breaker.failure(Instant::now());
            }
            let open = u64::from(breaker.is_open());
            self.counters
                .auth_breaker_open
                .store(open, Ordering::Relaxed);
        }
        match answer {
            Ok(Reply::Answer(a)) => self.identity(a),
            Ok(Reply::Refused) => Err(AuthError::Refused),
            Ok(Reply::Failed(why)) | Err(why) => {
                tracing::debug!(error = %why, "auth endpoint call failed");
                Err(AuthError::Unavailable)
            }
        }
    }

    async fn post(&self, req: &AuthRequest<'_>, budget: Duration) -> Result<Reply, String> {
        let body = serde_json::to_vec(&Call {
            token: req.token,
            device: req.device,
            remote_addr: req.remote_addr.map(|a| a.to_string()),
            since: req.since,
            purpose: req.purpose,
        })
        .map_err(|e| e.to_string())?;
        let request = with_client(|c| {
            let r = c
                .post(&self.cfg.url)
                .timeout(budget)
                .content_type("application/json");
            if self.cfg.secret.is_empty() {
                r
            } else {
                r.insert_header((self.cfg.header.as_str(), self.cfg.secret.as_str()))
            }
        });
        let mut resp = request.send_body(body).await.map_err(|e| e.to_string())?;
        match resp.status().as_u16() {
            200 => {}
            401 | 403 => return Ok(Reply::Refused),
            s => return Ok(Reply::Failed(format!("endpoint answered {s}"))),
        }
        let bytes = resp
            .body()
            .limit(self.cfg.max_response_bytes)
            .await
            .map_err(|e| e.to_string())?;
        Ok(match serde_json::from_slice::<AuthAnswer>(&bytes) {
            Ok(a) => Reply::Answer(a),
            Err(e) => Reply::Failed(format!("answer is not valid: {e}")),
        })
    }

    /// The identity an answer vouches for; its expiry defaults to `default_ttl_s` and is
    /// held to `auth.max_token_lifetime_s`.
    fn identity(&self, a: AuthAnswer) -> Outcome {
        let now = now_s();
        let mut expires_at = a
            .expires_at
            .unwrap_or_else(|| now.saturating_add(self.cfg.default_ttl_s));
        if is_too_far_ahead(expires_at, self.max_lifetime_s, now) {
            expires_at = now.saturating_add(self.max_lifetime_s);
        }
        let id = Identity::vouched(
            &a.user,
            a.device.as_deref(),
            expires_at,
            a.limits.and_then(|l| l.max_sessions),
        )?;
        if expires_at <= now {
            return Err(AuthError::Expired);
        }
        Ok(id)
    }
}

/// What one call got back.
enum Reply {
    Answer(AuthAnswer),
    Refused,
    Failed(String),
}
