//! Which nodes the cluster page shows: every node the registry has named since this node
//! started, so a node that stops answering (killed, partitioned, or already dropped from the
//! registry by its expired liveness key) is shown as down instead of vanishing. Plain logic:
//! the handler feeds it the registry and the answers.

use std::collections::BTreeMap;

/// How long a node that stopped answering stays on the page.
pub const FORGET_AFTER_MS: u64 = 10 * 60 * 1_000;
/// Most nodes remembered (a registry flooded with ids cannot grow this without bound).
pub const MAX_NODES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// The node's internal listener, where its readings are asked for.
    internal: String,
    /// Last time it answered (or was first named), unix ms.
    last_seen_ms: u64,
    /// Last time the registry named it, unix ms.
    listed_ms: u64,
}

/// A node as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub node: String,
    pub up: bool,
    pub last_seen_ms: u64,
    /// Still in the registry (false once its liveness key expired).
    pub registered: bool,
}

/// The nodes known to this node's dashboard.
#[derive(Debug, Default)]
pub struct Roster {
    nodes: BTreeMap<String, Entry>,
}

impl Roster {
    /// Merges the registry's live nodes (id, internal address) read at `now_ms` and answers
    /// every remembered node to ask, by id.
    pub fn targets(&mut self, listed: &[(String, String)], now_ms: u64) -> Vec<(String, String)> {
        for (id, internal) in listed {
            if !self.nodes.contains_key(id) && self.nodes.len() >= MAX_NODES {
                continue;
            }
            let e = self.nodes.entry(id.clone()).or_insert_with(|| Entry {
                internal: internal.clone(),
                last_seen_ms: now_ms,
                listed_ms: now_ms,
            });
            e.internal.clone_from(internal);
            e.listed_ms = now_ms;
        }
        self.nodes
            .retain(|_, e| now_ms.saturating_sub(e.last_seen_ms) <= FORGET_AFTER_MS);
        self.nodes
            .iter()
            .map(|(id, e)| (id.clone(), e.internal.clone()))
            .collect()
    }

    /// Records whether `node` answered at `now_ms`; answers its status.
    pub fn answered(&mut self, node: &str, up: bool, now_ms: u64) -> Option<Status> {
        let e = self.nodes.get_mut(node)?;
        if up {
            e.last_seen_ms = now_ms;
        }
        Some(Status {
            node: node.to_string(),
            up,
            last_seen_ms: e.last_seen_ms,
            registered: e.listed_ms == now_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(ids: &[&str]) -> Vec<(String, String)> {
        ids.iter()
            .map(|i| (i.to_string(), format!("{i}:9000")))
            .collect()
    }

    #[test]
    fn a_node_gone_from_the_registry_is_still_asked_and_shown_down() {
        let mut r = Roster::default();
        let t = r.targets(&listed(&["a", "b"]), 1_000);
        assert_eq!(t.len(), 2);
        assert!(r.answered("b", true, 1_000).unwrap().up);
        // b was killed: its liveness key expired, the registry no longer names it.
        let t = r.targets(&listed(&["a"]), 5_000);
        assert_eq!(t, listed(&["a", "b"]), "b is still asked");
        let b = r.answered("b", false, 5_000).unwrap();
        assert_eq!((b.up, b.last_seen_ms, b.registered), (false, 1_000, false));
        let a = r.answered("a", true, 5_000).unwrap();
        assert!(a.up && a.registered);
    }

    #[test]
    fn a_node_down_for_longer_than_the_limit_is_forgotten_and_unknown_answers_are_ignored() {
        let mut r = Roster::default();
        r.targets(&listed(&["a"]), 0);
        r.answered("a", false, 0);
        assert_eq!(r.targets(&[], FORGET_AFTER_MS).len(), 1);
        assert!(r.targets(&[], FORGET_AFTER_MS + 1).is_empty());
        assert_eq!(r.answered("a", true, 1), None);
    }

    #[test]
    fn the_roster_is_bounded_in_nodes() {
        let mut r = Roster::default();
        let many: Vec<(String, String)> = (0..MAX_NODES + 10)
            .map(|i| (format!("n{i}"), String::new()))
            .collect();
        assert_eq!(r.targets(&many, 0).len(), MAX_NODES);
    }
}
