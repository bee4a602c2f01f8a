//! Errors of the synchronisation layer.

/// Why a lock (or another primitive) could not be acquired.
///
/// Owner death is *not* an error here: locks report it as
/// [`OwnerDied`](crate::sync::OwnerDied), which carries the guard.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// `try_*` found it held.
    #[error("the lock is held by another thread or process; retry, or use lock() to wait")]
    WouldBlock,
    /// The timeout passed.
    #[error("timed out waiting for the lock; its holder may be stuck, or the timeout is too short")]
    Timeout,
    /// The calling thread already holds it.
    #[error("this thread already holds the lock: locking it again would deadlock")]
    WouldDeadlock,
    /// A previous owner died and the survivor did not mark the data consistent.
    #[error(
        "the lock is permanently unusable: an owner died and the next holder released it without \
         calling mark_consistent(); recreate the object"
    )]
    NotRecoverable,
    /// The shared bytes do not hold a valid lock.
    #[error("the shared lock word is corrupt or uninitialised (EINVAL); recreate the object")]
    Corrupt,
    /// The primitive was shut down (barrier aborted or broken, queue closed, ...).
    #[error("the primitive is broken: a participant aborted it or died; reset or recreate it")]
    Broken,
    /// Any other OS error.
    #[error("lock operation failed: {0}")]
    Os(#[source] std::io::Error),
}
