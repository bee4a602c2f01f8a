//! `Mutex<T>`: a robust, process-shared mutex guarding a value, placeable in any segment.
//!
//! Built on [`LazyRawMutex`] (a glibc robust, process-shared, error-checking pthread
//! mutex that initialises itself on first use), followed by the value:
//!
//! ```text
//! #[repr(C)] Mutex<T> { raw: LazyRawMutex (state word + pthread_mutex_t), data: T }
//! ```
//!
//! | what happens                                 | next `lock()` returns                              |
//! |----------------------------------------------|----------------------------------------------------|
//! | free                                         | `Ok(guard)`                                        |
//! | held by another thread/process               | waits (`try_lock`: `WouldBlock`; timed: `Timeout`) |
//! | holder died (SIGKILL, thread exit)           | `Err(AcquireError::OwnerDied(..))`, lock held      |
//! | that guard dropped without `mark_consistent` | `LockError::NotRecoverable`, for ever, never a hang |
//! | this thread already holds it                 | `LockError::WouldDeadlock`                         |
//!
//! The kernel learns of a dead owner from glibc's robust list, so owner death is noticed
//! at once (no polling), including for processes killed with SIGKILL.
//!
//! Guards are `!Send`: a robust pthread mutex must be unlocked by the thread that locked
//! it. While any guard exists, the segment holding the lock is not unmapped (see
//! `sys::held`): the guard counts itself there.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use super::error::{AcquireError, AcquireResult, LockError, OwnerDied, Recover, Sealed};
use super::{Acquired, LazyRawMutex};
use crate::sys::Deadline;

/// A robust, process-shared mutex guarding a `T`, like Python's `Lock` plus the data it
/// protects. `#[repr(C)]`, position independent, and valid as all-zero bytes (an unlocked
/// mutex holding a zeroed `T`), so it can live in a zero-filled segment or inside your
/// own `#[repr(C)]` struct there (see [`SharedObject`](crate::shared::SharedObject)).
///
/// In shared memory, `T` must be [`bytemuck::Pod`]: no pointers, every bit pattern valid.
///
/// ```
/// use shmkit::shared::SharedObject;
/// use shmkit::sync::Mutex;
///
/// let counter = SharedObject::<Mutex<u64>>::anonymous(|m| *m.get_mut() = 10)?;
/// // ... fork workers, or open a named object from other processes ...
/// *counter.lock()? += 1;
/// assert_eq!(*counter.lock()?, 11);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[repr(C)]
pub struct Mutex<T> {
    raw: LazyRawMutex,
    data: UnsafeCell<T>,
}

// SAFETY: the value is only reached through a guard, which exists while the lock is held
// (mutual exclusion across threads and processes), so sharing `&Mutex<T>` is sound when
// `T` may be sent between threads, exactly as for `std::sync::Mutex`.
unsafe impl<T: Send> Sync for Mutex<T> {}
// SAFETY: the mutex owns its value; the pthread mutex holds no thread-affine state while
// unlocked, and a locked one cannot be moved (it is borrowed by its guard).
unsafe impl<T: Send> Send for Mutex<T> {}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T> std::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mutex").finish_non_exhaustive()
    }
}

impl<T> Mutex<T> {
    /// An unlocked mutex holding `value`. The pthread mutex is initialised on first use.
    ///
    /// ```
    /// let m = shmkit::sync::Mutex::new(1u32);
    /// *m.lock()? += 1;
    /// assert_eq!(m.into_inner(), 2);
    /// # Ok::<(), shmkit::LockError>(())
    /// ```
    pub const fn new(value: T) -> Self {
        Self { raw: LazyRawMutex::new(), data: UnsafeCell::new(value) }
    }

    /// The guard for an acquisition outcome. The clean case is kept apart from the rest
    /// (out of line) so the hot path builds the guard in registers.
    #[inline]
    fn guard(&self, how: Result<Acquired, LockError>) -> AcquireResult<MutexGuard<'_, T>> {
        match how {
            Ok(Acquired::Clean) => Ok(MutexGuard { mutex: self, consistent: true, _not_send: PhantomData }),
            other => self.guard_slow(other),
        }
    }

    #[cold]
    #[inline(never)]
    fn guard_slow(&self, how: Result<Acquired, LockError>) -> AcquireResult<MutexGuard<'_, T>> {
        match how {
            Ok(Acquired::Clean) => Ok(MutexGuard { mutex: self, consistent: true, _not_send: PhantomData }),
            Ok(Acquired::OwnerDied) => Err(AcquireError::OwnerDied(OwnerDied::new(MutexGuard {
                mutex: self,
                consistent: false,
                _not_send: PhantomData,
            }))),
            Err(e) => Err(AcquireError::Lock(e)),
        }
    }

    /// Block until the lock is acquired.
    ///
    /// Errors: [`AcquireError::OwnerDied`] (acquired; the previous holder died),
    /// [`LockError::WouldDeadlock`], [`LockError::NotRecoverable`],
    /// [`LockError::AbandonedByThread`] (a thread of a live process exited holding it:
    /// never granted again), [`LockError::InitStalled`] (another process's first-use
    /// initialisation did not finish within [`INIT_STALL`](super::INIT_STALL)) and
    /// [`LockError::Corrupt`] for broken shared bytes.
    #[inline]
    pub fn lock(&self) -> AcquireResult<MutexGuard<'_, T>> {
        // The hot path returns straight from a zero code; everything else is out of line.
        if let Some(raw) = self.raw.ready() {
            crate::sys::held::acquired(raw.addr());
            // SAFETY: recorded just above.
            let r = unsafe { raw.lock_code() };
            if r == 0 {
                if self.raw.granted() {
                    return Ok(MutexGuard { mutex: self, consistent: true, _not_send: PhantomData });
                }
                return self.guard_slow(self.raw.outcome(Ok(Acquired::Clean)));
            }
            return self.guard_slow(self.raw.nonzero_outcome(r));
        }
        self.guard_slow(self.raw.lock())
    }

    /// Acquire only if nobody holds the lock now ([`LockError::WouldBlock`] otherwise).
    ///
    /// ```
    /// let m = shmkit::sync::Mutex::new(0u8);
    /// let g = m.lock()?;
    /// assert!(matches!(m.try_lock(), Err(shmkit::sync::AcquireError::Lock(shmkit::LockError::WouldDeadlock))));
    /// drop(g);
    /// assert!(m.try_lock().is_ok());
    /// # Ok::<(), shmkit::LockError>(())
    /// ```
    pub fn try_lock(&self) -> AcquireResult<MutexGuard<'_, T>> {
        self.guard(self.raw.try_lock())
    }

    /// Block until acquired, or fail with [`LockError::Timeout`] after `timeout`
    /// (measured on CLOCK_MONOTONIC).
    ///
    /// ```
    /// use std::time::Duration;
    /// let m = shmkit::sync::Mutex::new(0u8);
    /// let g = m.lock_timeout(Duration::from_millis(100))?;
    /// # drop(g);
    /// # Ok::<(), shmkit::LockError>(())
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> AcquireResult<MutexGuard<'_, T>> {
        self.lock_until(Deadline::after(timeout))
    }

    pub(crate) fn lock_until(&self, deadline: Deadline) -> AcquireResult<MutexGuard<'_, T>> {
        self.guard(self.raw.lock_until(deadline))
    }

    /// The value, through exclusive access (no locking needed: `&mut self` proves nobody
    /// else can reach it, for example while initialising an unpublished segment).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Consume the mutex, returning the value.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }

    /// The raw robust mutex, for building other primitives next to this one.
    pub fn raw(&self) -> &LazyRawMutex {
        &self.raw
    }
}

/// Access to the value of a locked [`Mutex`]; unlocks on drop. `!Send`: it must be
/// dropped by the thread that locked.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct MutexGuard<'a, T> {
    mutex: &'a Mutex<T>,
    /// `false` for an owner-died guard until `mark_consistent`.
    consistent: bool,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared reference to the guard only gives `&T`, so it may be shared between
// threads whenever `&T` may (as `std::sync::MutexGuard`).
unsafe impl<T: Sync> Sync for MutexGuard<'_, T> {}

impl<'a, T> MutexGuard<'a, T> {
    /// Declare the value consistent after the previous owner died (see [`OwnerDied`]).
    /// Harmless on a guard from a clean acquisition.
    pub fn mark_consistent(guard: &mut Self) -> Result<(), LockError> {
        if guard.consistent {
            return Ok(());
        }
        // SAFETY: the guard exists only while this thread holds the lock.
        unsafe { guard.mutex.raw.mark_consistent() }?;
        guard.consistent = true;
        Ok(())
    }

    /// The mutex this guard locks.
    pub fn mutex(guard: &Self) -> &'a Mutex<T> {
        guard.mutex
    }

    /// Release the lock without running the drop glue twice; for condition variables.
    pub(crate) fn into_mutex(guard: Self) -> &'a Mutex<T> {
        let m = guard.mutex;
        drop(guard);
        m
    }
}

impl<T> Sealed for MutexGuard<'_, T> {}

impl<T> Recover for MutexGuard<'_, T> {
    fn recover(&mut self) -> Result<(), LockError> {
        MutexGuard::mark_consistent(self)
    }
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this thread holds the lock, which excludes
        // every other access to the value in every process that follows the protocol.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` excludes other uses of this guard.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the guard was created right after this thread acquired the lock, and it
        // is !Send, so this is that thread.
        unsafe {
            if self.consistent {
                self.mutex.raw.unlock();
            } else if self.mutex.raw.held_by_this_process() {
                // An owner-died guard never marked consistent: not recoverable, for ever.
                // (Dropped in a forked child, it leaves the parent's lock alone.)
                self.mutex.raw.unlock_unrecovered();
            }
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}
