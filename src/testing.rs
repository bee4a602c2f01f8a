//! Test hooks, gathered in one place; not part of the stable API.
//!
//! - Stop points: [`pause_at`] (queues, byte queues, pipes) and [`stop_inside_claim_table`]
//!   (range claims) freeze this process (`SIGSTOP`, for ever) at a chosen point inside a
//!   protocol, so that a test can check what its peers see while it is stopped there, and
//!   then kill it. Unset, each costs one relaxed load at its point.
//! - Hostile bytes: [`scribble`] overwrites a byte of a dict's control block.
//! - Looking inside: [`stats`] and [`journal_in_flight`] for a dict or list,
//!   [`stripe_has_room`] for a dict.

use std::sync::atomic::Ordering;

pub use crate::channel::Point;
pub use crate::manager::dict::RecoveryStats;
use crate::manager::{DictKey, ManagerError, SharedDict, SharedList};
use crate::shared::Element;

/// Make every later queue, byte-queue or pipe operation of this process stop it for ever
/// (`SIGSTOP`) when it reaches `point` (`None`: never, the default), so that a test can
/// `SIGKILL` it mid-operation.
#[cfg(not(loom))]
pub fn pause_at(point: Option<Point>) {
    crate::channel::pause_at(point);
}

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

/// Overwrite byte `offset % control_len` of `dict`'s control block with `byte`, unless it
/// lies in a mutex; returns whether it wrote. For fuzzing hostile bytes.
///
/// # Safety
///
/// No other thread or process may use the dict while this runs.
pub unsafe fn scribble<K: DictKey + ?Sized, V: Element>(dict: &SharedDict<K, V>, offset: usize, byte: u8) -> bool {
    // SAFETY: the caller promises what `SharedDict::scribble` requires: nobody else uses
    // the dict meanwhile.
    unsafe { dict.scribble(offset, byte) }
}

/// Whether the stripe of `key` has a free node (to tell `StripeFull` from a bug).
pub fn stripe_has_room<K: DictKey + ?Sized, V: Element>(
    dict: &SharedDict<K, V>,
    key: &K,
) -> Result<bool, ManagerError> {
    dict.stripe_has_room(key)
}

/// The recovery counters of a dict or list: locks taken from a dead holder, half-done
/// operations rolled back.
pub fn stats(container: &impl Journaled) -> RecoveryStats {
    container.journal_stats()
}

/// Whether the journal of a dict or list records an operation in flight (for tests that
/// stop a process there).
pub fn journal_in_flight(container: &impl Journaled) -> bool {
    container.journal_busy()
}

mod sealed {
    use super::RecoveryStats;

    pub trait Journal {
        fn journal_stats(&self) -> RecoveryStats;
        fn journal_busy(&self) -> bool;
    }
}

/// A shared container with an undo journal: [`SharedDict`] or [`SharedList`].
pub trait Journaled: sealed::Journal {}

impl<K: DictKey + ?Sized, V: Element> sealed::Journal for SharedDict<K, V> {
    fn journal_stats(&self) -> RecoveryStats {
        self.stats()
    }
    fn journal_busy(&self) -> bool {
        self.journal_in_flight()
    }
}
impl<K: DictKey + ?Sized, V: Element> Journaled for SharedDict<K, V> {}

impl<T: Element> sealed::Journal for SharedList<T> {
    fn journal_stats(&self) -> RecoveryStats {
        self.stats()
    }
    fn journal_busy(&self) -> bool {
        self.journal_in_flight()
    }
}
impl<T: Element> Journaled for SharedList<T> {}

/// Every guard, claim and handle that releases something on drop is `#[must_use]`: these
/// doctests drop one of each unused under `deny(unused_must_use)` and must fail to compile,
/// while the first block, which binds each one, compiles.
///
/// ```
/// #![deny(unused_must_use)]
/// fn keep_valueguard(x: shmkit::shared::ValueGuard<'_, u64>) { let _x = std::convert::identity(x); }
/// fn keep_claim(x: shmkit::shared::Claim<'_, u64>) { let _x = std::convert::identity(x); }
/// fn keep_claimmut(x: shmkit::shared::ClaimMut<'_, u64>) { let _x = std::convert::identity(x); }
/// fn keep_atomicclaim(x: shmkit::shared::AtomicClaim<'_, std::sync::atomic::AtomicU64>) { let _x = std::convert::identity(x); }
/// fn keep_ownerdied(x: shmkit::sync::OwnerDied<shmkit::MutexGuard<'_, u64>>) { let _x = std::convert::identity(x); }
/// fn keep_mutexguard(x: shmkit::MutexGuard<'_, u64>) { let _x = std::convert::identity(x); }
/// fn keep_rwlockreadguard(x: shmkit::sync::RwLockReadGuard<'_, u64>) { let _x = std::convert::identity(x); }
/// fn keep_rwlockwriteguard(x: shmkit::sync::RwLockWriteGuard<'_, u64>) { let _x = std::convert::identity(x); }
/// fn keep_permit(x: shmkit::sync::Permit<'_, 4>) { let _x = std::convert::identity(x); }
/// fn keep_process(x: shmkit::process::Process<u64>) { let _x = std::convert::identity(x); }
/// fn keep_imap(x: shmkit::pool::Imap<'_, u64, u64, std::ops::Range<u64>>) { let _x = std::convert::identity(x); }
/// fn keep_pool(x: shmkit::pool::Pool) { let _x = std::convert::identity(x); }
/// fn keep_pipeend(x: shmkit::channel::PipeEnd) { let _x = std::convert::identity(x); }
/// fn keep_segment(x: shmkit::Segment) { let _x = std::convert::identity(x); }
/// ```
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn drop_valueguard(x: shmkit::shared::ValueGuard<'_, u64>) { std::convert::identity(x); }
/// ```
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn drop_claim(x: shmkit::shared::Claim<'_, u64>) { std::convert::identity(x); }
/// ```
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn drop_claimmut(x: shmkit::shared::ClaimMut<'_, u64>) { std::convert::identity(x); }
/// ```
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn drop_atomicclaim(x: shmkit::shared::AtomicClaim<'_, std::sync::atomic::AtomicU64>) { std::convert::identity(x); }
/// ```
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn drop_ownerdied(x: shmkit::sync::OwnerDied<shmkit::MutexGuard<'_, u64>>) { std::convert::identity(x); }
/// ```
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn drop_mutexguard(x: shmkit::MutexGuard<'_, u64>) { std::convert::identity(x); }
/// ```
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn drop_rwlockreadguard(x: shmkit::sync::RwLockReadGuard<'_, u64>) { std::convert::identity(x); }
/// ```
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn drop_rwlockwriteguard(x: shmkit::sync::RwLockWriteGuard<'_, u64>) { std::convert::identity(x); }
/// ```
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn drop_permit(x: shmkit::sync::Permit<'_, 4>) { std::convert::identity(x); }
/// ```
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn drop_process(x: shmkit::process::Process<u64>) { std::convert::identity(x); }
/// ```
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn drop_imap(x: shmkit::pool::Imap<'_, u64, u64, std::ops::Range<u64>>) { std::convert::identity(x); }
/// ```
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn drop_pool(x: shmkit::pool::Pool) { std::convert::identity(x); }
/// ```
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn drop_pipeend(x: shmkit::channel::PipeEnd) { std::convert::identity(x); }
/// ```
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn drop_segment(x: shmkit::Segment) { std::convert::identity(x); }
/// ```
#[cfg(doctest)]
pub struct MustUseChecks;
