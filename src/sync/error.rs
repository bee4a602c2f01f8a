//! Errors of the synchronisation layer, and the owner-died outcome that carries a guard.

use std::fmt;

/// Why a lock (or another primitive) could not be acquired.
///
/// Owner death is *not* reported here while the guard can still be used: locks return
/// [`AcquireError::OwnerDied`], which carries the guard. [`LockError::OwnerDied`] only
/// appears when such an error was converted (with `?` or `into`) and its guard dropped.
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
    /// An owner died holding the lock, and the guard that came back with that news was
    /// dropped by a conversion into this error without `mark_consistent()`.
    #[error(
        "a previous owner died holding the lock and the recovered guard was dropped without \
         mark_consistent(), so the lock is now permanently unusable; match AcquireError::OwnerDied \
         (or call AcquireError::recover) to repair the data and keep the lock usable"
    )]
    OwnerDied,
    /// The shared bytes do not hold a valid lock.
    #[error("the shared lock word is corrupt or uninitialised (EINVAL); recreate the object")]
    Corrupt,
    /// Another process started the one-time initialisation of this lock and has not
    /// finished by the deadline (it is stopped or very slow; had it died, this process
    /// would have taken over).
    #[error(
        "process {pid} began initialising this lock and has not finished (it may be stopped, \
         e.g. by SIGSTOP or a debugger); retry later, or resume or kill that process"
    )]
    InitStalled {
        /// The initialising process.
        pid: u32,
    },
    /// A thread of process `pid` (possibly this one) died holding the lock, and that
    /// process has not ended: a guard the thread leaked may still give it access to the
    /// data, so the lock is refused, for every process, while `pid` lives. Once it has
    /// ended the next acquirer gets [`AcquireError::OwnerDied`]; for this very process,
    /// that is never.
    #[error(
        "a thread of process {pid} exited while holding this lock (a guard or claim leaked with \
         mem::forget or Box::leak outlives its thread), and that process still runs: the lock is \
         refused until it ends, so that nothing aliases the leaked borrow; drop guards on the thread \
         that took them"
    )]
    AbandonedByThread {
        /// The process whose thread held the lock.
        pid: u32,
    },
    /// The primitive was shut down (barrier aborted or broken, queue closed, ...).
    #[error("the primitive is broken: a participant aborted it, timed out or died; reset or recreate it")]
    Broken,
    /// A bounded semaphore was released more often than it was acquired.
    #[error(
        "semaphore released too many times: it would exceed its limit of {limit} permits \
         (every release must match an acquire)"
    )]
    TooManyReleases {
        /// The most permits the semaphore may hold.
        limit: u32,
    },
    /// The primitive has no valid configuration (for example a barrier of 0 parties, as a
    /// zero-filled segment holds before its creator stored `Barrier::new(n)`).
    #[error("the {what} is not configured: {hint}")]
    Unconfigured {
        /// Which primitive.
        what: &'static str,
        /// How to configure it.
        hint: &'static str,
    },
    /// Any other OS error.
    #[error("lock operation failed: {0}")]
    Os(#[source] std::io::Error),
}

mod sealed {
    pub trait Sealed {}
}

/// A guard that may come back from a lock whose previous owner died, and that can
/// declare the protected data consistent again. Implemented by shmkit's guards.
pub trait Recover: sealed::Sealed {
    /// Tell the lock the data is consistent again (after repairing it).
    #[doc(hidden)]
    fn recover(&mut self) -> Result<(), LockError>;
}

pub(crate) use sealed::Sealed;

/// The lock was acquired, but its previous owner died while holding it: the data it
/// protects may be half-updated. Like std's `PoisonError`, it carries the guard.
///
/// Repair the data through [`get_mut`](Self::get_mut), then call
/// [`mark_consistent`](Self::mark_consistent) to get an ordinary guard back. If the guard
/// is dropped without that (also after [`into_inner`](Self::into_inner)), the lock becomes
/// permanently unusable: every later attempt fails with [`LockError::NotRecoverable`],
/// it never hangs.
///
/// ```
/// use shmkit::sync::{AcquireError, Mutex};
/// let m = Mutex::new(0u64);
/// let mut guard = match m.lock() {
///     Ok(g) => g,
///     Err(AcquireError::OwnerDied(died)) => {
///         let mut g = died.into_inner();
///         *g = 0; // repair: recompute the value from trusted state
///         shmkit::sync::MutexGuard::mark_consistent(&mut g)?;
///         g
///     }
///     Err(AcquireError::Lock(e)) => return Err(e.into()),
/// };
/// *guard += 1;
/// # Ok::<(), shmkit::LockError>(())
/// ```
#[must_use = "the lock is held: dropping this without `mark_consistent` makes the lock not recoverable, for every process"]
pub struct OwnerDied<G> {
    guard: G,
}

impl<G: Recover> OwnerDied<G> {
    pub(crate) fn new(guard: G) -> Self {
        Self { guard }
    }

    /// The guard, still marked inconsistent.
    pub fn get_ref(&self) -> &G {
        &self.guard
    }

    /// The guard, still marked inconsistent, to repair the data.
    pub fn get_mut(&mut self) -> &mut G {
        &mut self.guard
    }

    /// Take the guard without marking the data consistent. Dropping it then makes the
    /// lock permanently unusable, unless the guard's own `mark_consistent` is called.
    pub fn into_inner(self) -> G {
        self.guard
    }

    /// Declare the data consistent (repair it first) and get an ordinary guard.
    pub fn mark_consistent(mut self) -> Result<G, LockError> {
        self.guard.recover()?;
        Ok(self.guard)
    }
}

impl<G> fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerDied").finish_non_exhaustive()
    }
}

impl<G> fmt::Display for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the previous owner died holding the lock; the data may be half-updated: repair it, then \
             call mark_consistent()",
        )
    }
}

impl<G> std::error::Error for OwnerDied<G> {}

/// Why an acquisition did not return a plain guard: the previous owner died (the lock
/// *is* held, the guard comes with the error), or it failed.
///
/// ```
/// use shmkit::sync::Mutex;
/// let m = Mutex::new(5u32);
/// // Accept a dead owner's data as it is:
/// let g = m.lock().or_else(|e| e.recover())?;
/// assert_eq!(*g, 5);
/// # Ok::<(), shmkit::LockError>(())
/// ```
pub enum AcquireError<G> {
    /// Acquired, but the previous owner died holding the lock.
    OwnerDied(OwnerDied<G>),
    /// Not acquired.
    Lock(LockError),
}

/// What shmkit's lock operations return.
pub type AcquireResult<G> = Result<G, AcquireError<G>>;

impl<G: Recover> AcquireError<G> {
    /// Keep going: for [`OwnerDied`](Self::OwnerDied), mark the data consistent as it is
    /// and return the guard; otherwise return the error.
    pub fn recover(self) -> Result<G, LockError> {
        match self {
            AcquireError::OwnerDied(d) => d.mark_consistent(),
            AcquireError::Lock(e) => Err(e),
        }
    }

    /// The underlying error, if the lock was not acquired.
    pub fn as_lock_error(&self) -> Option<&LockError> {
        match self {
            AcquireError::OwnerDied(_) => None,
            AcquireError::Lock(e) => Some(e),
        }
    }

    /// Whether the previous owner died (the lock is held by the caller).
    pub fn is_owner_died(&self) -> bool {
        matches!(self, AcquireError::OwnerDied(_))
    }
}

impl<G> From<LockError> for AcquireError<G> {
    fn from(e: LockError) -> Self {
        AcquireError::Lock(e)
    }
}

impl<G> From<AcquireError<G>> for LockError {
    /// Drops the guard of an owner-died outcome without marking it consistent (so the
    /// lock becomes unusable) and reports [`LockError::OwnerDied`].
    fn from(e: AcquireError<G>) -> Self {
        match e {
            AcquireError::OwnerDied(_) => LockError::OwnerDied,
            AcquireError::Lock(e) => e,
        }
    }
}

impl<G> fmt::Debug for AcquireError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireError::OwnerDied(d) => f.debug_tuple("OwnerDied").field(d).finish(),
            AcquireError::Lock(e) => f.debug_tuple("Lock").field(e).finish(),
        }
    }
}

impl<G> fmt::Display for AcquireError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireError::OwnerDied(d) => fmt::Display::fmt(d, f),
            AcquireError::Lock(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<G> std::error::Error for AcquireError<G> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AcquireError::OwnerDied(_) => None,
            AcquireError::Lock(e) => Some(e),
        }
    }
}

impl<G> From<AcquireError<G>> for crate::Error {
    /// As the conversion into [`LockError`]: an owner-died guard is dropped unrepaired.
    fn from(e: AcquireError<G>) -> Self {
        crate::Error::Lock(e.into())
    }
}
