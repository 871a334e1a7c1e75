//! Questions this node asks its peers directly, signed like forwards: which devices of a
//! user a peer holds (`POST /internal/v1/presence`), for a presence that covers the whole
//! cluster, and a peer's dashboard readings (`POST /internal/v1/view`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::hub::DevicePresence;
use crate::clock::now_ms;
use crate::cluster::sign;
use crate::ids::{NodeId, UserId};

/// Largest presence answer read from a peer.
const MAX_ANSWER: usize = 1024 * 1024;

/// The body of a presence question.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PresenceQuery {
    /// The asking node; must be the signed sender.
    pub from: String,
    pub user: UserId,
}

/// The body of a dashboard question.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ViewQuery {
    /// The asking node; must be the signed sender.
    pub from: String,
}

/// A peer's answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct PresenceAnswer {
    pub devices: Vec<DevicePresence>,
}

/// How this node asks its peers.
pub struct PeerAsk {
    me: NodeId,
    secret: Vec<u8>,
    timeout: Duration,
}

impl PeerAsk {
    pub fn new(me: NodeId, secret: &str, timeout: Duration) -> Self {
        Self {
            me,
            secret: secret.as_bytes().to_vec(),
            timeout,
        }
    }

    /// The devices of `user` connected to the peer whose internal listener is `addr`.
    pub async fn presence(&self, addr: &str, user: &UserId) -> Result<Vec<DevicePresence>, String> {
        let query = PresenceQuery {
            from: self.me.to_string(),
            user: user.clone(),
        };
        let mut resp = self.post(addr, "presence", &query, self.timeout).await?;
        let answer: PresenceAnswer = resp
            .json()
            .limit(MAX_ANSWER)
            .await
            .map_err(|e| e.to_string())?;
        Ok(answer.devices)
    }

    /// The dashboard readings (a `NodeView`, as JSON) of the peer at `addr`, waiting at
    /// most `timeout`.
    pub async fn view(&self, addr: &str, timeout: Duration) -> Result<bytes::Bytes, String> {
        let query = ViewQuery {
            from: self.me.to_string(),
        };
        let mut resp = self.post(addr, "view", &query, timeout).await?;
        resp.body()
            .limit(MAX_ANSWER)
            .await
            .map_err(|e| e.to_string())
    }

    /// A signed POST of `body` to the peer's `/internal/v1/<path>`; a non-2xx is an error.
    async fn post<B: Serialize>(
        &self,
        addr: &str,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<awc::ClientResponse, String> {
        // unwrap: the queries serialize to JSON infallibly
        let body = bytes::Bytes::from(serde_json::to_vec(body).unwrap());
        let ts = now_ms();
        let sig = sign::sign(&self.secret, ts, self.me.as_str(), &body);
        let resp = awc::Client::default()
            .post(format!("http://{addr}/internal/v1/{path}"))
            .timeout(timeout)
            .insert_header((sign::HDR_NODE, self.me.as_str()))
            .insert_header((sign::HDR_TS, ts.to_string()))
            .insert_header((sign::HDR_SIG, sig))
            .content_type("application/json")
            .send_body(body)
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("peer answered {}", resp.status()));
        }
        Ok(resp)
    }
}
