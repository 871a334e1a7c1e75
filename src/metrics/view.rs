//! One node's dashboard view: the history ring plus what is true right now (actor table,
//! backend latencies, peers, the ten deepest session queues, sessions per user, the
//! process). Served as JSON by the node itself and, to the node that renders a cluster
//! page, over the signed internal listener.

use serde::Serialize;

use super::history::{ActorRow, OpRow, PeerRow, Sample};
use super::{Counters, QueueRow};

/// Rows in the deepest-queues table.
pub const DEEPEST_QUEUES: usize = 10;

/// Everything the dashboard shows of one node.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NodeView {
    pub node: String,
    pub t_ms: u64,
    pub timing: bool,
    /// Oldest first, one per second.
    pub samples: Vec<Sample>,
    pub actors: Vec<ActorRow>,
    pub ops: Vec<OpRow>,
    pub peers: Vec<PeerRow>,
    pub queues: Vec<QueueRow>,
    /// (sessions per user bucket, users).
    pub users_by_sessions: Vec<(&'static str, u64)>,
    /// Closes of sessions that could not keep up, went silent, or were refused at the door.
    pub closes: Closes,
}

/// Session closes and refusals since start.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct Closes {
    pub slow_consumer: u64,
    pub heartbeat_timeout: u64,
    pub refused: u64,
}

impl NodeView {
    /// The view of the node that owns `c`, named `node`, at `now_ms`.
    pub fn read(c: &Counters, node: &str, now_ms: u64) -> Self {
        let h = c.history();
        Self {
            node: node.to_string(),
            t_ms: now_ms,
            timing: c.timing(),
            samples: h.samples().copied().collect(),
            actors: h.actors.clone(),
            ops: h.ops.clone(),
            peers: h.peers.clone(),
            queues: c.queues.deepest(DEEPEST_QUEUES, now_ms),
            users_by_sessions: c.users_by_sessions.read(),
            closes: Closes {
                slow_consumer: Counters::get(&c.slow_consumers),
                heartbeat_timeout: Counters::get(&c.heartbeat_timeouts),
                refused: Counters::get(&c.sessions_refused)
                    + Counters::get(&c.sessions_refused_per_user)
                    + Counters::get(&c.connects_rate_limited),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_view_carries_the_history_and_the_deepest_queues_first() {
        let c = Counters::default();
        c.sample(1_000);
        Counters::add(&c.accepted, 10);
        c.sample(2_000);
        let shallow = c.queues.register(1, Arc::from("u1"), Arc::from("d"), 0);
        let deep = c.queues.register(2, Arc::from("u2"), Arc::from("d"), 0);
        shallow.set(1, 10, || 1_000);
        deep.set(5, 50, || 1_500);
        Counters::add(&c.sessions_refused, 2);
        let v = NodeView::read(&c, "n1", 2_000);
        assert_eq!(v.samples.len(), 1);
        assert_eq!(v.samples[0].in_per_s, 10.0);
        assert_eq!(v.actors.len(), super::super::ActorKind::ALL.len());
        let users: Vec<&str> = v.queues.iter().map(|q| q.user.as_str()).collect();
        assert_eq!(users, ["u2", "u1"]);
        assert_eq!(v.queues[0].backlog_ms, 500);
        assert_eq!(v.closes.refused, 2);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["node"], "n1");
    }
}
