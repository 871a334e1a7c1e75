//! The hub's direct lane to a session's socket, for broadcasts.
//!
//! A session runs on its user's hub shard thread, so the shard can hand a broadcast batch
//! straight to the session's outbound side instead of posting it to the session's mailbox
//! and waking its task: when nothing waits ahead of the batch, its shared bytes go to the
//! socket in one `write` from the shard's own loop, and the session actor is not polled at
//! all. Anything else (frames queued, a partial write pending, a session on another thread)
//! takes the mailbox as before, so a session's frames keep their order.
//!
//! Each thread keeps its sessions' outbound sides in a registry of its own: a session
//! enters it when it starts and leaves when it stops, and the shard looks sessions up by id
//! while it broadcasts. Nothing in it crosses threads.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::outbound::{Outbound, Through};
use crate::frames::wire::Encoded;
use crate::ids::SessionId;

thread_local! {
    static LANES: RefCell<HashMap<u64, Rc<RefCell<Outbound>>>> = RefCell::new(HashMap::new());
}

/// Puts session `id`'s outbound side in its thread's registry.
pub fn enter(id: SessionId, out: Rc<RefCell<Outbound>>) {
    LANES.with(|l| l.borrow_mut().insert(id.0, out));
}

/// Takes session `id` out of its thread's registry.
pub fn leave(id: SessionId) {
    LANES.with(|l| l.borrow_mut().remove(&id.0));
}

/// The sessions of the current thread, for one broadcast pass.
pub struct Lanes<'a>(&'a HashMap<u64, Rc<RefCell<Outbound>>>);

/// Runs `f` with the current thread's sessions.
pub fn with<R>(f: impl FnOnce(&Lanes<'_>) -> R) -> R {
    LANES.with(|l| f(&Lanes(&l.borrow())))
}

/// What became of a broadcast offered through the lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direct {
    /// On its way to the socket: written, or its unwritten rest left to the writer.
    Written,
    /// The session is closing: like its mailbox path, it drops the frames.
    Dropped,
    /// Not here (frames wait ahead of it, or it runs on another thread): use the mailbox.
    Busy,
}

impl Lanes<'_> {
    /// Offers `frames` to session `id` directly.
    pub fn offer(&self, id: SessionId, frames: &Encoded) -> Direct {
        let Some(out) = self.0.get(&id.0) else {
            return Direct::Busy;
        };
        // The session's own task is not running: the shard calls this from its handler.
        let Ok(mut out) = out.try_borrow_mut() else {
            return Direct::Busy;
        };
        match out.write_through(&frames.bytes) {
            Through::Written => Direct::Written,
            Through::Closing => Direct::Dropped,
            Through::Busy => Direct::Busy,
        }
    }
}
