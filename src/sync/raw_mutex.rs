//! The robust, process-shared pthread mutex every shmkit lock is built on.
//!
//! `PTHREAD_PROCESS_SHARED | PTHREAD_MUTEX_ROBUST | PTHREAD_MUTEX_ERRORCHECK`:
//!
//! | event                                   | next `lock()` returns                        |
//! |-----------------------------------------|----------------------------------------------|
//! | free                                    | `Acquired::Clean`                            |
//! | owner thread/process died holding it    | `Acquired::OwnerDied` (the lock *is* held)   |
//! | unlocked after OwnerDied, no consistent | `LockError::NotRecoverable`, for ever         |
//! | same thread locks twice                 | `LockError::WouldDeadlock`                   |
//! | bytes are not a mutex                   | `LockError::Corrupt` (EINVAL)                |
//!
//! The kernel learns of owner death from glibc's per-thread robust list, which is linked
//! *through the mutexes*: a mapping must never be unmapped while this process holds a
//! lock inside it (see [`crate::sys::held`]). Peers that can write the segment are
//! trusted not to scribble over lock words on purpose; glibc validates what it can.

use std::cell::UnsafeCell;

use super::LockError;
use super::wait::{Cadence, WaitPolicy, spin_then};
use crate::sys::{self, Deadline};

/// How a lock was acquired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// Normally.
    Clean,
    /// The previous owner died holding it; the data may be half-updated.
    OwnerDied,
}

/// A robust, process-shared mutex with no data. `#[repr(C)]`, position independent.
#[repr(C)]
pub struct RawMutex {
    inner: UnsafeCell<sys::pthread::pthread_mutex_t>,
}

// SAFETY: a pthread mutex is designed to be used from many threads (and, initialised
// PTHREAD_PROCESS_SHARED, from many processes) through a shared reference.
unsafe impl Sync for RawMutex {}
// SAFETY: the mutex holds no thread-affine data; ownership is tracked in the lock word.
unsafe impl Send for RawMutex {}

fn check(r: libc::c_int) -> Result<(), LockError> {
    if r == 0 { Ok(()) } else { Err(LockError::Os(std::io::Error::from_raw_os_error(r))) }
}

impl RawMutex {
    /// Initialise a mutex in place (robust, process-shared, error-checking).
    ///
    /// # Safety
    ///
    /// `this` must be valid for writes of `size_of::<RawMutex>()` bytes, suitably aligned,
    /// and no thread or process may use the mutex until this returns.
    pub unsafe fn init(this: *mut RawMutex) -> Result<(), LockError> {
        // SAFETY: `this` is valid for writes and unused per the caller's contract, and so is
        // its `inner` mutex, whose address this computes without reading.
        check(unsafe { sys::pthread::init_robust_shared(UnsafeCell::raw_get(std::ptr::addr_of!((*this).inner))) })
    }

    /// All-zero bytes: *not* a usable robust mutex until [`RawMutex::init`] ran on it
    /// (glibc would take zero bytes for a plain, private, non-robust mutex). Used by
    /// [`LazyRawMutex`](super::LazyRawMutex), which initialises it on first use.
    pub(crate) const fn zeroed() -> Self {
        // SAFETY: `pthread_mutex_t` is a C union of integers and arrays of integers, for
        // which the all-zero bit pattern is a valid value.
        Self { inner: UnsafeCell::new(unsafe { std::mem::zeroed() }) }
    }

    fn ptr(&self) -> *mut sys::pthread::pthread_mutex_t {
        self.inner.get()
    }

    /// The address `sys::held` records this lock under.
    #[inline]
    pub(crate) fn addr(&self) -> usize {
        self.ptr() as usize
    }

    /// Whether the lock word names a live owner thread (a hint: it may change at once). A
    /// lock whose owner thread died has only `FUTEX_OWNER_DIED` left and does not look held.
    #[inline]
    pub(crate) fn looks_locked(&self) -> bool {
        // SAFETY: `self` is a live mutex (any bytes: only the lock word is loaded).
        unsafe { sys::pthread::looks_locked(self.ptr()) }
    }

    /// Map a pthread return code; the common `0` is handled inline, the rest out of line.
    #[inline]
    fn outcome(&self, r: libc::c_int) -> Result<Acquired, LockError> {
        if r == 0 {
            sys::held::acquired(self.addr());
            Ok(Acquired::Clean)
        } else {
            self.outcome_slow(r)
        }
    }

    #[cold]
    #[inline(never)]
    fn outcome_slow(&self, r: libc::c_int) -> Result<Acquired, LockError> {
        let out = match r {
            0 => Ok(Acquired::Clean),
            libc::EOWNERDEAD => Ok(Acquired::OwnerDied),
            libc::EBUSY => Err(LockError::WouldBlock),
            libc::ETIMEDOUT => Err(LockError::Timeout),
            libc::EDEADLK => Err(LockError::WouldDeadlock),
            libc::ENOTRECOVERABLE => Err(LockError::NotRecoverable),
            libc::EINVAL => Err(LockError::Corrupt),
            e => Err(LockError::Os(std::io::Error::from_raw_os_error(e))),
        };
        if out.is_ok() {
            sys::held::acquired(self.addr());
        }
        out
    }

    /// The return code of acquiring the lock (`pthread_mutex_lock`'s codes); any nonzero
    /// code goes through [`RawMutex::nonzero_outcome`]. For guard types whose hot path must
    /// not merge with the error paths (that costs a stack round trip). One try-lock first;
    /// a busy lock is waited for as [`WaitPolicy::process_default`] says (spinning on
    /// try-locks, then `pthread_mutex_lock`).
    ///
    /// # Safety
    ///
    /// The caller must have recorded the acquisition with `sys::held::acquired(self.addr())` *before*
    /// the call (this undoes the count when the code is nonzero). Counting first keeps the
    /// bookkeeping away from the contended cache line and out of the critical section;
    /// counting a lock a moment early only ever delays an unmap.
    #[inline]
    pub(crate) unsafe fn lock_code(&self) -> libc::c_int {
        // SAFETY: as in `lock`.
        let r = unsafe { sys::pthread::trylock(self.ptr()) };
        if r == 0 { 0 } else { self.contended(r, &Deadline::never(), None) }
    }

    /// After a try-lock returned `first` (nonzero): wait for the lock until `deadline`
    /// (whose absolute time is `ts`; `None`: for ever) and return the code, with
    /// [`RawMutex::lock_code`]'s contract. A busy lock is spun on (a load of the lock
    /// word, a try-lock when it looks free) for as long as the wait policy says, then
    /// waited for in glibc, so owner death comes back exactly as from `pthread_mutex_lock`
    /// (`EOWNERDEAD`, from the try-lock or the lock).
    #[cold]
    #[inline(never)]
    fn contended(&self, first: libc::c_int, deadline: &Deadline, ts: Option<&libc::timespec>) -> libc::c_int {
        sys::held::released(self.addr());
        if first != libc::EBUSY {
            if first == libc::ENOTRECOVERABLE {
                self.undo_notrecoverable_trylock();
            }
            return first;
        }
        let ready = || {
            if self.looks_locked() {
                return None;
            }
            // SAFETY: as in `lock`.
            match unsafe { sys::pthread::trylock(self.ptr()) } {
                libc::EBUSY => None,
                libc::ENOTRECOVERABLE => {
                    self.undo_notrecoverable_trylock();
                    Some(libc::ENOTRECOVERABLE)
                }
                r => Some(r),
            }
        };
        let park = || match ts {
            // SAFETY: as in `lock`.
            None => unsafe { sys::pthread::lock(self.ptr()) },
            // SAFETY: as in `lock`; `ts` is a live timespec.
            Some(ts) => unsafe { sys::pthread::lock_until_monotonic(self.ptr(), ts) },
        };
        let r = spin_then(WaitPolicy::process_default(), Cadence::Stream, self.addr(), deadline, ready, park);
        if r == 0 {
            sys::held::acquired(self.addr());
        }
        r
    }

    /// The outcome of a nonzero code from [`RawMutex::lock_code`].
    #[cold]
    pub(crate) fn nonzero_outcome(&self, r: libc::c_int) -> Result<Acquired, LockError> {
        self.outcome_slow(r)
    }

    /// Block until acquired.
    #[inline]
    pub fn lock(&self) -> Result<Acquired, LockError> {
        sys::held::acquired(self.addr());
        // SAFETY: recorded just above. `self` is an initialised process-shared mutex (the
        // constructors of every type holding one guarantee it); glibc validates the type bits.
        match unsafe { self.lock_code() } {
            0 => Ok(Acquired::Clean),
            r => self.outcome_slow(r),
        }
    }

    /// Acquire only if free now.
    #[inline]
    pub fn try_lock(&self) -> Result<Acquired, LockError> {
        // SAFETY: as in `lock`.
        let r = unsafe { sys::pthread::trylock(self.ptr()) };
        if r == libc::ENOTRECOVERABLE {
            self.undo_notrecoverable_trylock();
        }
        self.outcome(r)
    }

    /// Work around a glibc bug (present through at least 2.36): `pthread_mutex_trylock`
    /// on a robust mutex that is not recoverable takes the lock word (`__lock = tid`),
    /// returns `ENOTRECOVERABLE`, and never gives the word back (its `oldval == id`
    /// test compares against the CAS's old value, 0). Every later `pthread_mutex_lock` of
    /// another thread would then sleep for ever on a lock nobody holds. We give the word
    /// back and wake its sleepers, who then see `ENOTRECOVERABLE` themselves.
    #[cold]
    fn undo_notrecoverable_trylock(&self) {
        const FUTEX_WAITERS: u32 = 0x8000_0000;
        const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
        let tid = sys::process::gettid() as u32;
        // SAFETY: `__lock`, the futex word, is the first `int` of glibc's
        // `struct __pthread_mutex_s` on every architecture (it is ABI); the mutex is live
        // for `&self`, 4-aligned, and glibc itself only accesses `__lock` atomically.
        let word = unsafe { &*self.ptr().cast::<std::sync::atomic::AtomicU32>() };
        let mut cur = word.load(std::sync::atomic::Ordering::Relaxed);
        while cur & FUTEX_TID_MASK == tid {
            match word.compare_exchange(
                cur,
                0,
                std::sync::atomic::Ordering::Release,
                std::sync::atomic::Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if cur & FUTEX_WAITERS != 0 {
                        sys::futex::wake_all(word);
                    }
                    return;
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Block until acquired or `deadline` (CLOCK_MONOTONIC) passes.
    pub fn lock_until(&self, deadline: Deadline) -> Result<Acquired, LockError> {
        match deadline.abs_timespec() {
            None => self.lock(),
            Some(ts) => {
                // SAFETY: as in `lock`.
                let r = match unsafe { sys::pthread::trylock(self.ptr()) } {
                    0 => {
                        sys::held::acquired(self.addr());
                        0
                    }
                    first => {
                        // Recorded for `contended`'s contract, which undoes it.
                        sys::held::acquired(self.addr());
                        self.contended(first, &deadline, Some(&ts))
                    }
                };
                match r {
                    0 => Ok(Acquired::Clean),
                    r => self.outcome_slow(r),
                }
            }
        }
    }

    /// Mark the state protected by a lock acquired with `OwnerDied` as consistent again.
    ///
    /// # Safety
    ///
    /// The calling thread must hold the lock.
    pub unsafe fn mark_consistent(&self) -> Result<(), LockError> {
        // SAFETY: the caller holds the lock, as pthread_mutex_consistent requires.
        check(unsafe { sys::pthread::consistent(self.ptr()) })
    }

    /// Release the lock.
    ///
    /// # Safety
    ///
    /// The calling thread must hold the lock.
    #[inline]
    pub unsafe fn unlock(&self) {
        // SAFETY: the caller holds the lock. With ERRORCHECK, unlocking a lock we do not
        // hold returns EPERM instead of corrupting it.
        let r = unsafe { sys::pthread::unlock(self.ptr()) };
        if r == 0 {
            sys::held::released(self.addr());
        }
    }
}
