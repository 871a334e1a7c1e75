//! [`HubHandle`] with a shard whose thread stopped: its users are reported missing, nothing
//! is left counted in the backlog for it, and presence and the local users skip it.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::bindings::memory::MemoryBindings;
use crate::frames::Frame;

fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn delivery(to: &UserId) -> Delivery {
    Delivery {
        user: to.clone(),
        seq: 1,
        frame: Frame::from("{}".to_string()),
    }
}

/// A user on shard `k` of two.
fn on_shard(k: usize) -> UserId {
    (0..64)
        .map(|i| user(&format!("u{i}")))
        .find(|u| shards::shard_of(u, 2) == k)
        .unwrap()
}

#[test]
fn a_stopped_shards_users_are_reported_missing_and_leave_no_backlog_behind() {
    actix::System::new().block_on(async {
        let counters = Arc::new(Counters::default());
        let node = NodeId::parse("n1").unwrap();
        let bindings = Arc::new(MemoryBindings::default());
        let every = Duration::from_secs(1);
        let hub = HubHandle::new(2, node, bindings, every, Duration::ZERO, counters);
        let threads = hub.run_on_own_threads();
        assert_eq!((hub.waiting_shards(), hub.stopped_shards()), (0, 0));
        let (live, gone) = (on_shard(0), on_shard(1));
        threads[1].stop();
        let stopped = async {
            while hub.stopped_shards() == 0 {
                actix_rt::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), stopped)
            .await
            .expect("the shard whose thread stopped is seen stopped");
        assert_eq!(hub.stopped_shards(), 1);

        let items = vec![delivery(&live), delivery(&gone)];
        let mut missing = hub.deliver_reporting_missing(items).await.unwrap();
        missing.sort();
        let mut both = vec![live.clone(), gone.clone()];
        both.sort();
        assert_eq!(
            missing, both,
            "no sessions on either: both missing, one per shard"
        );
        assert_eq!(hub.backlog(), 0);
        hub.deliver(vec![delivery(&gone)]);
        hub.broadcast(bytestring::ByteString::from_static("{}"));
        let settled = async {
            while hub.backlog() > 0 {
                actix_rt::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), settled)
            .await
            .expect("nothing stays counted for a shard that will never handle it");
        assert!(hub.presence(gone).await.unwrap().is_empty());
        assert!(hub.local_users().await.unwrap().is_empty());
        threads[0].stop();
    });
}

#[test]
fn a_thread_runs_one_shard_however_often_it_asks() {
    actix::System::new().block_on(async {
        let node = NodeId::parse("n1").unwrap();
        let bindings = Arc::new(MemoryBindings::default());
        let every = Duration::from_secs(1);
        let counters = Arc::new(Counters::default());
        let hub = HubHandle::new(2, node, bindings, every, every, counters);
        assert!(hub.take_shard_here());
        assert!(
            hub.take_shard_here(),
            "a worker built again keeps its shard"
        );
        assert_eq!(
            hub.waiting_shards(),
            1,
            "the other is left for the other worker"
        );
    });
}
