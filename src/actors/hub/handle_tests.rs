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

/// A handle on two shards that no thread has taken yet; broadcasts go out after `batch`.
fn handle(batch: Duration) -> HubHandle {
    let node = NodeId::parse("n1").unwrap();
    let bindings = Arc::new(MemoryBindings::default());
    let counters = Arc::new(Counters::default());
    HubHandle::new(2, node, bindings, Duration::from_secs(1), batch, counters)
}

/// Waits, at most 5 s, until `done` holds; fails saying `what` should have happened.
pub(super) async fn until(what: &str, done: impl Fn() -> bool) {
    let wait = async {
        while !done() {
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .is_err()
    {
        panic!("{what}");
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
        let hub = handle(Duration::ZERO);
        let threads = hub.run_on_own_threads();
        assert_eq!((hub.waiting_shards(), hub.stopped_shards()), (0, 0));
        let (live, gone) = (on_shard(0), on_shard(1));
        threads[1].stop();
        until("the shard whose thread stopped is seen stopped", || {
            hub.stopped_shards() > 0
        })
        .await;
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
        until(
            "nothing stays counted for a shard that will never handle it",
            || hub.backlog() == 0,
        )
        .await;
        assert!(hub.presence(gone).await.unwrap().is_empty());
        assert!(hub.local_users().await.unwrap().is_empty());
        threads[0].stop();
    });
}

#[test]
fn a_thread_runs_one_shard_however_often_it_asks() {
    actix::System::new().block_on(async {
        let hub = handle(Duration::from_secs(1));
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

#[test]
fn a_thread_that_runs_a_shard_of_one_hub_still_takes_one_of_another() {
    actix::System::new().block_on(async {
        let (first, second) = (
            handle(Duration::from_secs(1)),
            handle(Duration::from_secs(1)),
        );
        assert!(first.take_shard_here());
        assert!(
            second.take_shard_here(),
            "the second hub's shard is its own"
        );
        assert_eq!((first.waiting_shards(), second.waiting_shards()), (1, 1));
    });
}
