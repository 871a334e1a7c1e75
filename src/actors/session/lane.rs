//! The hub's direct lane to a session's socket, for broadcasts.
//!
//! A session runs on its user's hub shard thread, so the shard can hand a broadcast batch
//! straight to the session's outbound side instead of posting it to the session's mailbox
//! and waking its task: when nothing waits ahead of the batch, its shared bytes go to the
//! socket in one `write` from the shard's own loop, and the session actor is not polled at
//! all. Anything else (frames queued, a partial write pending, a session on another thread)
//! takes the mailbox as before, so a session's frames keep their order.
//!
//! The hand-over stays on the thread: a starting session leaves its outbound side in its
//! thread's hand-over table, and the shard takes it from there when the session joins
//! (the join message itself must be `Send`, an `Rc` is not). The table is empty once the
//! session joined; the shard's member entry then holds the lane until the session leaves.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::outbound::{Outbound, Through};
use crate::frames::wire::Encoded;
use crate::ids::SessionId;

thread_local! {
    static HANDOVER: RefCell<HashMap<u64, Rc<RefCell<Outbound>>>> = RefCell::new(HashMap::new());
}

/// Leaves session `id`'s outbound side for its shard on this thread.
pub fn hand_over(id: SessionId, out: Rc<RefCell<Outbound>>) {
    HANDOVER.with(|t| t.borrow_mut().insert(id.0, out));
}

/// Withdraws what session `id` left and its shard did not take (the session stops).
pub fn withdraw(id: SessionId) {
    HANDOVER.with(|t| t.borrow_mut().remove(&id.0));
}

/// Session `id`'s lane, if it runs on this thread and has not been taken yet.
pub fn take(id: SessionId) -> Option<Lane> {
    HANDOVER.with(|t| t.borrow_mut().remove(&id.0)).map(Lane)
}

/// A session's outbound side as its shard reaches it.
pub struct Lane(Rc<RefCell<Outbound>>);

impl Lane {
    /// Offers `frames` to the session directly ([`Through::Busy`]: use the mailbox).
    pub fn offer(&self, frames: &Encoded) -> Through {
        // The session's own task is not running: the shard calls this from its handler.
        match self.0.try_borrow_mut() {
            Ok(mut out) => out.write_through(&frames.bytes),
            Err(_) => Through::Busy,
        }
    }
}
