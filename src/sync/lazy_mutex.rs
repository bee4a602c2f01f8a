//! A robust process-shared mutex that is valid as all-zero bytes and initialises itself,
//! race-free, on first use.
//!
//! Fresh segments are zero-filled, but zero bytes are not a robust process-shared pthread
//! mutex (glibc reads them as a plain private one). So a state word precedes the mutex:
//!
//! | `state`        | meaning                                                         |
//! |----------------|-----------------------------------------------------------------|
//! | 0 `UNINIT`     | never used; the first user CASes it to `INITIALISING`           |
//! | 1 `INITIALISING` | one thread runs `pthread_mutex_init`; others futex-wait       |
//! | 2 `READY`      | published with Release; every use loads it with Acquire         |
//! | 3 `NOT_RECOVERABLE` | an owner-died guard was released unrepaired: every use fails |
//! | anything else  | corrupt: [`LockError::Corrupt`]                                 |
//!
//! `NOT_RECOVERABLE` mirrors glibc's own state, but is checked *before* calling into
//! glibc, so no thread ever calls `pthread_mutex_trylock` on a not-recoverable mutex
//! (which, through a glibc bug, would leave the lock word taken; see
//! `RawMutex::try_lock`) except in the instant the state changes.
//!
//! The fast path is one Acquire load. If the initialising process dies between its CAS
//! and its `READY` store (a window of a few hundred nanoseconds, once in the life of the
//! lock), waiters report [`LockError::InitStalled`] after [`INIT_STALL`] instead of
//! hanging; taking over would be unsound, since a merely slow initialiser could still
//! overwrite a mutex somebody already holds.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{Acquired, LockError, RawMutex};
use crate::sys::{Deadline, futex};

const UNINIT: u32 = 0;
const INITIALISING: u32 = 1;
const READY: u32 = 2;
const NOT_RECOVERABLE: u32 = 3;

/// How long a user waits for another thread's initialisation before reporting
/// [`LockError::InitStalled`].
pub const INIT_STALL: Duration = Duration::from_secs(1);

/// A [`RawMutex`] that initialises itself on first use: all-zero bytes are a valid,
/// unlocked, not-yet-initialised mutex. `#[repr(C)]`, position independent. The building
/// block of every shmkit lock; use it directly only to build your own primitives.
///
/// ```
/// use shmkit::sync::{Acquired, LazyRawMutex};
/// let m = LazyRawMutex::new();
/// assert_eq!(m.lock()?, Acquired::Clean);
/// assert!(m.try_lock().is_err()); // this thread holds it: WouldDeadlock
/// // SAFETY: this thread holds the lock.
/// unsafe { m.unlock() };
/// # Ok::<(), shmkit::LockError>(())
/// ```
#[repr(C)]
pub struct LazyRawMutex {
    state: AtomicU32,
    _pad: u32,
    raw: RawMutex,
}

impl Default for LazyRawMutex {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for LazyRawMutex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyRawMutex").field("state", &self.state.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

impl LazyRawMutex {
    /// An unlocked, not yet initialised mutex (the all-zero bytes).
    pub const fn new() -> Self {
        Self { state: AtomicU32::new(UNINIT), _pad: 0, raw: RawMutex::zeroed() }
    }

    /// The initialised mutex, initialising it first if nobody has.
    #[inline]
    pub fn get(&self) -> Result<&RawMutex, LockError> {
        if self.state.load(Ordering::Acquire) == READY { Ok(&self.raw) } else { self.init_slow() }
    }

    #[cold]
    fn init_slow(&self) -> Result<&RawMutex, LockError> {
        let mut stall: Option<Deadline> = None;
        loop {
            match self.state.load(Ordering::Acquire) {
                READY => return Ok(&self.raw),
                UNINIT => {
                    if self.state.compare_exchange(UNINIT, INITIALISING, Ordering::Acquire, Ordering::Acquire).is_err()
                    {
                        continue;
                    }
                    // SAFETY: the CAS made this thread the only one that may touch `raw`
                    // until `READY` is published: everybody else waits in this loop. `raw`
                    // is inside an UnsafeCell, so writing through a pointer derived from
                    // `&self` is allowed.
                    let r = unsafe { RawMutex::init(std::ptr::from_ref(&self.raw).cast_mut()) };
                    let next = if r.is_ok() { READY } else { UNINIT };
                    self.state.store(next, Ordering::Release);
                    futex::wake_all(&self.state);
                    r?;
                    return Ok(&self.raw);
                }
                INITIALISING => {
                    let deadline = *stall.get_or_insert_with(|| Deadline::after(INIT_STALL));
                    if deadline.passed() {
                        return Err(LockError::InitStalled);
                    }
                    futex::wait(&self.state, INITIALISING, deadline, Some(Duration::from_millis(10)));
                }
                NOT_RECOVERABLE => return Err(LockError::NotRecoverable),
                _ => return Err(LockError::Corrupt),
            }
        }
    }

    /// Whether the one-time initialisation has happened.
    pub fn is_initialised(&self) -> bool {
        self.state.load(Ordering::Acquire) == READY
    }

    /// Record a not-recoverable outcome in the state word.
    #[inline]
    fn seen(&self, r: Result<Acquired, LockError>) -> Result<Acquired, LockError> {
        if let Err(LockError::NotRecoverable) = r {
            let _ = self.state.compare_exchange(READY, NOT_RECOVERABLE, Ordering::Release, Ordering::Relaxed);
        }
        r
    }

    /// The mutex if it is initialised and usable, without the slow path.
    #[inline]
    pub(crate) fn ready(&self) -> Option<&RawMutex> {
        (self.state.load(Ordering::Acquire) == READY).then_some(&self.raw)
    }

    /// As [`LazyRawMutex::lock`], for a nonzero code from [`RawMutex::lock_code`] on the
    /// mutex [`LazyRawMutex::ready`] returned.
    #[cold]
    pub(crate) fn nonzero_outcome(&self, r: libc::c_int) -> Result<Acquired, LockError> {
        self.seen(RawMutex::nonzero_outcome(r))
    }

    /// Block until acquired. See [`RawMutex::lock`].
    #[inline]
    pub fn lock(&self) -> Result<Acquired, LockError> {
        self.seen(self.get()?.lock())
    }

    /// Acquire only if free now. See [`RawMutex::try_lock`].
    #[inline]
    pub fn try_lock(&self) -> Result<Acquired, LockError> {
        self.seen(self.get()?.try_lock())
    }

    /// Block until acquired or the timeout passes (CLOCK_MONOTONIC).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<Acquired, LockError> {
        self.lock_until(Deadline::after(timeout))
    }

    pub(crate) fn lock_until(&self, deadline: Deadline) -> Result<Acquired, LockError> {
        self.seen(self.get()?.lock_until(deadline))
    }

    /// Declare the state protected by a lock acquired with [`Acquired::OwnerDied`]
    /// consistent again.
    ///
    /// # Safety
    ///
    /// The calling thread must hold the lock.
    pub unsafe fn mark_consistent(&self) -> Result<(), LockError> {
        // SAFETY: the caller holds the lock, so it was initialised (it was acquired).
        unsafe { self.raw.mark_consistent() }
    }

    /// Release the lock.
    ///
    /// # Safety
    ///
    /// The calling thread must hold the lock.
    #[inline]
    pub unsafe fn unlock(&self) {
        // SAFETY: the caller holds the lock, so it was initialised (it was acquired).
        unsafe { self.raw.unlock() }
    }

    /// Release a lock acquired with [`Acquired::OwnerDied`] whose state was *not* marked
    /// consistent: the mutex becomes permanently not recoverable.
    ///
    /// # Safety
    ///
    /// The calling thread must hold the lock.
    pub unsafe fn unlock_unrecovered(&self) {
        // Publish first, so that nobody calls into glibc's trylock on it from now on.
        let _ = self.state.compare_exchange(READY, NOT_RECOVERABLE, Ordering::Release, Ordering::Relaxed);
        // SAFETY: the caller holds the lock. glibc makes an inconsistent mutex not
        // recoverable on unlock and wakes its waiters, who then fail.
        unsafe { self.raw.unlock() }
    }
}
