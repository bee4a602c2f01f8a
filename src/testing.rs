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
