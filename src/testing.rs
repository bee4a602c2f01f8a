//! Test hooks, gathered in one place: each freezes this process (`SIGSTOP`, for ever) at a
//! chosen point inside a protocol, so that a test can check what its peers see while it
//! is stopped there, and then kill it. Not part of the stable API. Unset, each costs one
//! relaxed load at its point.

use std::sync::atomic::Ordering;

pub use crate::channel::pause_at as pause_queue_at;

/// Make the next range claim of this process (on any `SharedArray` or `SharedValue`)
/// stop it for ever while it holds the claim table's lock.
pub fn stop_inside_claim_table() {
    crate::shared::claims::STOP_IN_TABLE_LOCK.store(true, Ordering::SeqCst);
}

/// Make the next named segment this process creates stop it for ever after its header is
/// written and before it is initialised and published: a creator "killed mid-initialisation".
pub fn stop_before_publish() {
    crate::segment::kind::STOP_BEFORE_PUBLISH.store(true, Ordering::SeqCst);
}
