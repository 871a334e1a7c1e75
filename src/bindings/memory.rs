//! In-process binding table for a single node: a map guarded by a std `Mutex` (nothing awaits
//! while it is held). Bindings do not expire: the only node is the one that holds them.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Bindings, BindingsError};
use crate::ids::{NodeId, UserId};

/// The embedded [`Bindings`] table.
#[derive(Default)]
pub struct MemoryBindings {
    map: Mutex<HashMap<UserId, Vec<NodeId>>>,
}

impl MemoryBindings {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, Vec<NodeId>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Bindings for MemoryBindings {
    async fn bind(&self, node: &NodeId, users: &[UserId]) -> Result<(), BindingsError> {
        let mut map = self.lock();
        for u in users {
            let nodes = map.entry(u.clone()).or_default();
            if !nodes.contains(node) {
                nodes.push(node.clone());
            }
        }
        Ok(())
    }

    async fn unbind(&self, node: &NodeId, users: &[UserId]) -> Result<(), BindingsError> {
        let mut map = self.lock();
        for u in users {
            if let Some(nodes) = map.get_mut(u) {
                nodes.retain(|n| n != node);
                if nodes.is_empty() {
                    map.remove(u);
                }
            }
        }
        Ok(())
    }

    async fn lookup(&self, users: &[UserId]) -> Result<Vec<Vec<NodeId>>, BindingsError> {
        let map = self.lock();
        Ok(users
            .iter()
            .map(|u| map.get(u).cloned().unwrap_or_default())
            .collect())
    }

    async fn health(&self) -> Result<(), BindingsError> {
        Ok(())
    }

    fn name(&self) -> &'static str {
        "memory"
    }

    fn shared(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn bind_lookup_unbind_round_trip() {
        let r = MemoryBindings::default();
        let (n1, n2) = (NodeId::parse("n1").unwrap(), NodeId::parse("n2").unwrap());
        let (a, b) = (UserId::parse("a").unwrap(), UserId::parse("b").unwrap());
        r.bind(&n1, &[a.clone(), b.clone()]).await.unwrap();
        r.bind(&n2, std::slice::from_ref(&a)).await.unwrap();
        r.bind(&n2, std::slice::from_ref(&a)).await.unwrap();
        assert_eq!(
            r.lookup(&[a.clone(), b.clone()]).await.unwrap(),
            vec![vec![n1.clone(), n2.clone()], vec![n1.clone()]]
        );
        r.unbind(&n1, &[a.clone(), b.clone()]).await.unwrap();
        assert_eq!(r.lookup(&[a, b]).await.unwrap(), vec![vec![n2], vec![]]);
    }
}
