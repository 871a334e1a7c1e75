//! The position check: every `session.position_check_ms` the node reads, in one batched
//! store call, the newest seq of every user with a session here, and tells those sessions.
//! A session behind it reads what it missed (see `session::order`), so an accepted message
//! reaches every online device within one interval even when every live push for it was
//! lost (a full peer queue, forwards that ran out of retries, a failed binding lookup, a
//! peer view that did not know the device's node yet).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::warn;

use super::hub::HubHandle;
use crate::metrics::Counters;
use crate::store::MessageStore;

/// Most users per store call (one `$in` query of this many ids with MongoDB).
pub const POSITION_BATCH: usize = 10_000;

/// Runs the check every `every` until the hub stops. Spawn it on the hub's arbiter.
pub async fn position_loop(
    hub: HubHandle,
    store: Arc<dyn MessageStore>,
    every: Duration,
    counters: Arc<Counters>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_warn: Option<Instant> = None;
    loop {
        tick.tick().await;
        let Ok(users) = hub.local_users().await else {
            return;
        };
        for chunk in users.chunks(POSITION_BATCH) {
            match store.last_seqs(chunk).await {
                Ok(seqs) if seqs.len() == chunk.len() => hub.positions(chunk.to_vec(), seqs),
                Ok(_) => warn!("store answered a position check for the wrong number of users"),
                Err(e) => {
                    Counters::add(&counters.position_check_errors, 1);
                    if last_warn.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                        last_warn = Some(Instant::now());
                        warn!(error = %e, "position check failed; sessions catch up at the next one");
                    }
                    break;
                }
            }
        }
    }
}
