//! In-process message store: the embedded single-node default and the unit-test store.
//!
//! Bounded by count and by bytes (see `log.rs`, whose bytes include the message id index of
//! `index.rs`); broadcasts are live only and not kept.
//! Nothing survives a restart. One std `Mutex` guards it all: nothing awaits while it is
//! held, and every operation is a few map/deque steps.

mod index;
mod log;

use std::sync::Mutex;

use async_trait::async_trait;

use super::{
    new_message_id, Accepted, CursorUpdate, DeviceCursor, MessageCopy, MessageStore, NewMessage,
    Page, StoreError, Target,
};
use crate::clock::now_ms;
use crate::config::StoreConfig;
use crate::frames::{Frame, MessageParts};
use crate::ids::{DeviceId, MessageId, Seq, UserId};
use log::{IdemEntry, Limits, Logs};

/// The in-process [`MessageStore`].
pub struct MemoryStore {
    inner: Mutex<Logs>,
}

impl MemoryStore {
    pub fn new(cfg: &StoreConfig) -> Self {
        let limits = Limits {
            max_per_user: cfg.max_messages_per_user,
            max_bytes: cfg.memory_max_bytes,
            max_keys: cfg.memory_max_keys,
            idempotency_window_ms: cfg.idempotency_window_s.saturating_mul(1000),
        };
        Self {
            inner: Mutex::new(Logs::new(limits)),
        }
    }

    /// Bytes the stored messages and their id index cost (for stats).
    pub fn bytes(&self) -> usize {
        self.lock().bytes()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Logs> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl MessageStore for MemoryStore {
    async fn append(&self, batch: Vec<NewMessage>) -> Result<Vec<Accepted>, StoreError> {
        let now = now_ms();
        let mut inner = self.lock();
        let mut out = Vec::with_capacity(batch.len());
        for msg in batch {
            if let Some(seen) = msg
                .idempotency_key
                .as_ref()
                .and_then(|key| inner.seen(key, now))
            {
                out.push(Accepted {
                    id: seen.id.clone(),
                    recipients: seen.recipients,
                    duplicate: true,
                    deliveries: Vec::new(),
                    broadcast: None,
                });
                continue;
            }
            let id = new_message_id();
            let parts = MessageParts::new(
                &id,
                msg.topic.as_deref(),
                msg.payload.get(),
                now,
                msg.arrived_us,
            );
            let (recipients, deliveries, broadcast) = match &msg.target {
                // Broadcasts are live only: nothing is kept.
                Target::Broadcast => (0, Vec::new(), Some(parts.broadcast_frame())),
                Target::Users(users) => {
                    let expires_ms = now.saturating_add(msg.ttl_s.saturating_mul(1000));
                    let d = inner.store_for_users(users, &id, &parts, expires_ms);
                    (users.len(), d, None)
                }
            };
            if let Some(key) = msg.idempotency_key {
                let entry = IdemEntry {
                    id: id.clone(),
                    recipients,
                };
                inner.remember(key, entry, now);
            }
            out.push(Accepted {
                id,
                recipients,
                duplicate: false,
                deliveries,
                broadcast,
            });
        }
        Ok(out)
    }

    async fn read(&self, user: &UserId, after: Seq, limit: usize) -> Result<Page, StoreError> {
        let now = now_ms();
        let inner = self.lock();
        let Some(log) = inner.users.get(user) else {
            return Ok(Page {
                settled_upto: Seq::MAX,
                ..Page::default()
            });
        };
        let first_retained = log
            .entries
            .front()
            .map_or(log.last_seq.saturating_add(1), |e| e.seq);
        // Entries are in seq order with no holes, so the start index is arithmetic. `after`
        // is the caller's (`?since=`): saturating, so 2^64-1 reads nothing, not everything.
        let skip = usize::try_from(after.saturating_add(1).saturating_sub(first_retained))
            .unwrap_or(usize::MAX);
        let mut rest = log.entries.iter().skip(skip);
        let messages: Vec<(Seq, Frame)> = rest
            .by_ref()
            .filter(|e| e.expires_ms > now)
            .take(limit)
            .map(|e| (e.seq, e.frame.stored()))
            .collect();
        let more = messages.len() == limit && rest.next().is_some();
        // Seqs are given out and stored under one lock, so nothing is ever in flight: every
        // seq this store does not return it will never have. A page cut at `limit` settles
        // only what it covered.
        let settled_upto = match messages.last() {
            Some((last, _)) if more => *last,
            _ => Seq::MAX,
        };
        Ok(Page {
            messages,
            last_seq: log.last_seq,
            first_retained,
            settled_upto,
            more,
            held_back: false,
        })
    }

    async fn last_seq(&self, user: &UserId) -> Result<Seq, StoreError> {
        Ok(self.lock().users.get(user).map_or(0, |l| l.last_seq))
    }

    async fn last_seqs(&self, users: &[UserId]) -> Result<Vec<Seq>, StoreError> {
        let inner = self.lock();
        Ok(users
            .iter()
            .map(|u| inner.users.get(u).map_or(0, |l| l.last_seq))
            .collect())
    }

    async fn cursor(&self, user: &UserId, device: &DeviceId) -> Result<Option<Seq>, StoreError> {
        Ok(self
            .lock()
            .users
            .get(user)
            .and_then(|l| l.cursors.get(device).copied()))
    }

    async fn save_cursors(&self, updates: Vec<CursorUpdate>) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for u in updates {
            inner.save_cursor(u.user, u.device, u.seq);
        }
        Ok(())
    }

    async fn locate(&self, id: &MessageId) -> Result<Vec<MessageCopy>, StoreError> {
        Ok(self.lock().locate(id.as_str(), now_ms()))
    }

    async fn device_cursors(&self, users: &[UserId]) -> Result<Vec<DeviceCursor>, StoreError> {
        Ok(self.lock().device_cursors(users))
    }

    async fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn store(max: usize) -> MemoryStore {
        MemoryStore::new(&StoreConfig {
            max_messages_per_user: max,
            ..StoreConfig::default()
        })
    }

    fn msg(users: &[&str], key: Option<&str>, ttl_s: u64) -> NewMessage {
        NewMessage {
            target: Target::Users(users.iter().map(|u| UserId::parse(u).unwrap()).collect()),
            topic: None,
            payload: RawValue::from_string("{\"x\":1}".into()).unwrap(),
            ttl_s,
            idempotency_key: key.map(String::from),
            arrived_us: 0,
        }
    }

    fn u(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    #[actix_rt::test]
    async fn seqs_increase_per_user_independently() {
        let s = store(10);
        let a = s
            .append(vec![msg(&["a", "b"], None, 60), msg(&["a"], None, 60)])
            .await
            .unwrap();
        assert_eq!(
            a[0].deliveries.iter().map(|d| d.seq).collect::<Vec<_>>(),
            vec![1, 1]
        );
        assert_eq!(a[1].deliveries[0].seq, 2);
        assert_eq!(s.last_seq(&u("a")).await.unwrap(), 2);
        assert_eq!(s.last_seq(&u("b")).await.unwrap(), 1);
    }

    #[actix_rt::test]
    async fn repeated_idempotency_key_returns_first_id_and_delivers_nothing() {
        let s = store(10);
        let first = s.append(vec![msg(&["a"], Some("k1"), 60)]).await.unwrap();
        let again = s.append(vec![msg(&["a"], Some("k1"), 60)]).await.unwrap();
        assert_eq!(first[0].id, again[0].id);
        assert!(again[0].duplicate);
        assert!(again[0].deliveries.is_empty());
        assert_eq!(s.last_seq(&u("a")).await.unwrap(), 1);
    }

    #[actix_rt::test]
    async fn read_returns_messages_after_seq_and_reports_dropped_history() {
        let s = store(3);
        for _ in 0..5 {
            s.append(vec![msg(&["a"], None, 60)]).await.unwrap();
        }
        let p = s.read(&u("a"), 0, 10).await.unwrap();
        assert_eq!(p.first_retained, 3);
        assert_eq!(p.last_seq, 5);
        assert_eq!(
            p.messages.iter().map(|m| m.0).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        let p = s.read(&u("a"), 3, 1).await.unwrap();
        assert_eq!(p.messages.iter().map(|m| m.0).collect::<Vec<_>>(), vec![4]);
    }

    #[actix_rt::test]
    async fn read_after_the_largest_seq_returns_nothing_instead_of_wrapping_to_all() {
        let s = store(10);
        s.append(vec![msg(&["a"], None, 60), msg(&["a"], None, 60)])
            .await
            .unwrap();
        for after in [2, 3, u64::MAX - 1, u64::MAX] {
            let p = s.read(&u("a"), after, 10).await.unwrap();
            assert!(p.messages.is_empty(), "after {after}: {:?}", p.messages);
            assert_eq!(p.last_seq, 2);
        }
    }

    #[actix_rt::test]
    async fn expired_messages_are_not_read() {
        let s = store(10);
        s.append(vec![msg(&["a"], None, 0), msg(&["a"], None, 60)])
            .await
            .unwrap();
        let p = s.read(&u("a"), 0, 10).await.unwrap();
        assert_eq!(p.messages.iter().map(|m| m.0).collect::<Vec<_>>(), vec![2]);
    }

    #[actix_rt::test]
    async fn a_stored_message_is_located_by_its_id_with_each_recipient_seq() {
        let s = store(10);
        s.append(vec![msg(&["a"], None, 60)]).await.unwrap();
        let a = s.append(vec![msg(&["a", "b"], None, 60)]).await.unwrap();
        let id = MessageId::parse(&a[0].id).unwrap();
        let mut copies = s.locate(&id).await.unwrap();
        copies.sort_by(|x, y| x.user.cmp(&y.user));
        let seen: Vec<_> = copies
            .iter()
            .map(|c| (c.user.as_str(), c.seq, c.stored))
            .collect();
        assert_eq!(seen, [("a", 2, true), ("b", 1, true)]);
        let other = MessageId::parse(&new_message_id()).unwrap();
        assert!(s.locate(&other).await.unwrap().is_empty());
    }

    #[actix_rt::test]
    async fn cursors_only_move_forward() {
        let s = store(10);
        for _ in 0..4 {
            s.append(vec![msg(&["a"], None, 60)]).await.unwrap();
        }
        let d = DeviceId::parse("p").unwrap();
        let up = |seq| CursorUpdate {
            user: u("a"),
            device: d.clone(),
            seq,
        };
        s.save_cursors(vec![up(3)]).await.unwrap();
        s.save_cursors(vec![up(2)]).await.unwrap();
        assert_eq!(s.cursor(&u("a"), &d).await.unwrap(), Some(3));
    }
}
