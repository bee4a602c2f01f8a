//! A robust process-shared mutex that is valid as all-zero bytes, initialises itself,
//! race-free, on first use, and records its owner's pid.
//!
//! Fresh segments are zero-filled, but zero bytes are not a robust process-shared pthread
//! mutex (glibc reads them as a plain private one). So a state word precedes the mutex,
//! and an owner word holds the pid of the process whose thread holds (or last held) it:
//!
//! | `state`                    | meaning                                                      |
//! |----------------------------|--------------------------------------------------------------|
//! | 0 `UNINIT`                 | never used; the first user CASes it to `INITIALISING(pid)`   |
//! | `INITIALISING` bit \| pid  | process `pid` runs `pthread_mutex_init`; others futex-wait   |
//! | 2 `READY`                  | published with Release; every use loads it with Acquire      |
//! | 3 `NOT_RECOVERABLE`        | an owner-died guard was released unrepaired: every use fails |
//! | 4 `ABANDONED`              | a thread of a live process died holding it: every use fails  |
//! | anything else              | corrupt: [`LockError::Corrupt`]                              |
//!
//! `NOT_RECOVERABLE` and `ABANDONED` are checked *before* calling into glibc, so no thread
//! calls `pthread_mutex_trylock` on a not-recoverable mutex (which, through a glibc bug,
//! would leave the lock word taken; see `RawMutex::try_lock`) except in the instant the
//! state changes.
//!
//! **Initialisation** is owned by the process whose pid the `INITIALISING` state carries.
//! Waiters take over only when that process has *ended*; a stopped or slow initialiser is
//! waited for until the caller's deadline ([`LockError::InitStalled`] names it), never
//! replaced, because nobody can hold a mutex that was never `READY` but a live
//! initialiser could still be writing it.
//!
//! **Thread death is not process death.** The kernel reports `EOWNERDEAD` when the owning
//! *thread* exits, but a guard leaked by that thread (`Box::leak`) can keep a `&mut` alive
//! in its process. So the next locker looks at the owner word: if that process has ended
//! (waiting briefly for one that is exiting), every borrow ended with it and the lock
//! comes back as [`Acquired::OwnerDied`]; if it is still alive — this very process
//! included — the lock is made permanently unusable (`ABANDONED`) and every caller gets
//! [`LockError::AbandonedByThread`] naming the pid.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{Acquired, LockError, RawMutex};
use crate::sys::{Deadline, futex, owner};

const UNINIT: u32 = 0;
const READY: u32 = 2;
const NOT_RECOVERABLE: u32 = 3;
const ABANDONED: u32 = 4;
/// Set in `state` while the process whose pid fills the other bits initialises the mutex.
const INITIALISING: u32 = 0x8000_0000;

/// How long a user without a deadline ([`LazyRawMutex::lock`]) waits for another process's
/// initialisation before reporting [`LockError::InitStalled`].
pub const INIT_STALL: Duration = Duration::from_secs(1);

/// How long a locker that found a dead owner thread waits for that thread's process to
/// finish exiting (a killed process's threads die one by one) before concluding that the
/// process lives on. Bounded by the caller's deadline, but at least [`OWNER_EXIT_MIN`].
const OWNER_EXIT_WAIT: Duration = Duration::from_secs(1);
const OWNER_EXIT_MIN: Duration = Duration::from_millis(20);

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
    /// See the module table.
    state: AtomicU32,
    /// Pid of the process that holds or last held the lock (0: nobody yet). Written by
    /// every acquirer while it holds the lock; read by the next acquirer after owner death.
    owner: AtomicU32,
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
        Self { state: AtomicU32::new(UNINIT), owner: AtomicU32::new(0), raw: RawMutex::zeroed() }
    }

    /// The initialised mutex, initialising it first if nobody has (waiting for another
    /// initialiser until `deadline`).
    #[inline]
    fn get(&self, deadline: Deadline) -> Result<&RawMutex, LockError> {
        if self.state.load(Ordering::Acquire) == READY { Ok(&self.raw) } else { self.init_slow(deadline) }
    }

    #[cold]
    fn init_slow(&self, deadline: Deadline) -> Result<&RawMutex, LockError> {
        let me = INITIALISING | owner::pid();
        loop {
            let seen = self.state.load(Ordering::Acquire);
            match seen {
                READY => return Ok(&self.raw),
                NOT_RECOVERABLE => return Err(LockError::NotRecoverable),
                ABANDONED => return Err(LockError::AbandonedByThread { pid: self.owner.load(Ordering::Relaxed) }),
                UNINIT => {
                    if self.state.compare_exchange(UNINIT, me, Ordering::Acquire, Ordering::Acquire).is_ok() {
                        return self.initialise(me);
                    }
                }
                s if s & INITIALISING != 0 => {
                    let by = s & !INITIALISING;
                    // Only the initialiser's end lets anyone else in: nobody holds a mutex
                    // that never was READY, and a dead process writes nothing more.
                    if s != me && owner::process_ended(by, Duration::ZERO) {
                        if self.state.compare_exchange(s, me, Ordering::Acquire, Ordering::Acquire).is_ok() {
                            return self.initialise(me);
                        }
                        continue;
                    }
                    if deadline.passed() {
                        return Err(LockError::InitStalled { pid: by });
                    }
                    futex::wait(&self.state, s, deadline, Some(Duration::from_millis(10)));
                }
                _ => return Err(LockError::Corrupt),
            }
        }
    }

    /// Run `pthread_mutex_init` as the owner of initialisation (`state == me`) and publish.
    fn initialise(&self, me: u32) -> Result<&RawMutex, LockError> {
        // SAFETY: `state == me` makes this thread the only one that may touch `raw` until
        // `READY` is published: everybody else waits in `init_slow` (or takes over only
        // after this whole process ended). `raw` is inside an UnsafeCell, so writing
        // through a pointer derived from `&self` is allowed.
        let r = unsafe { RawMutex::init(std::ptr::from_ref(&self.raw).cast_mut()) };
        let next = if r.is_ok() { READY } else { UNINIT };
        let _ = self.state.compare_exchange(me, next, Ordering::Release, Ordering::Relaxed);
        futex::wake_all(&self.state);
        r?;
        Ok(&self.raw)
    }

    /// Whether the one-time initialisation has happened.
    pub fn is_initialised(&self) -> bool {
        self.state.load(Ordering::Acquire) == READY
    }

    /// Whether the lock can never be acquired again (not recoverable, or abandoned by a
    /// thread of a live process).
    pub fn is_lost(&self) -> bool {
        matches!(self.state.load(Ordering::Acquire), NOT_RECOVERABLE | ABANDONED)
    }

    /// The pid of the process that holds the lock or held it last (0: never locked). A
    /// hint for error messages: it may change at any moment.
    pub fn owner_pid(&self) -> u32 {
        self.owner.load(Ordering::Relaxed)
    }

    /// Whether the owner word names this process: true while a thread of this process
    /// holds the lock. A guard dropped in a forked child (which does not own its
    /// parent's locks) uses it to leave the parent's state alone.
    #[inline]
    pub(crate) fn held_by_this_process(&self) -> bool {
        self.owner.load(Ordering::Relaxed) == owner::pid()
    }

    /// Record this process as the owner; called by every acquirer while it holds the lock.
    #[inline]
    pub(crate) fn set_owner(&self) {
        self.owner.store(owner::pid(), Ordering::Relaxed);
    }

    /// Settle an acquisition outcome: record the owner, decide what a dead owner means,
    /// and mirror a not-recoverable state in the state word.
    #[inline]
    fn settle(&self, r: Result<Acquired, LockError>, deadline: Deadline) -> Result<Acquired, LockError> {
        match r {
            Ok(Acquired::Clean) => {
                self.set_owner();
                Ok(Acquired::Clean)
            }
            other => self.settle_slow(other, deadline),
        }
    }

    #[cold]
    fn settle_slow(&self, r: Result<Acquired, LockError>, deadline: Deadline) -> Result<Acquired, LockError> {
        match r {
            Ok(Acquired::Clean) => {
                self.set_owner();
                Ok(Acquired::Clean)
            }
            Ok(Acquired::OwnerDied) => {
                let dead = self.owner.load(Ordering::Relaxed);
                let wait = deadline.remaining().unwrap_or(OWNER_EXIT_WAIT).clamp(OWNER_EXIT_MIN, OWNER_EXIT_WAIT);
                if owner::process_ended(dead, wait) {
                    self.set_owner();
                    return Ok(Acquired::OwnerDied);
                }
                // A thread of a live process died holding the lock: borrows it handed out
                // may still be alive there. Never grant the lock again.
                let _ = self.state.compare_exchange(READY, ABANDONED, Ordering::Release, Ordering::Relaxed);
                // SAFETY: we hold the lock (EOWNERDEAD acquires it). Unlocked without
                // pthread_mutex_consistent, glibc makes it not recoverable and wakes its
                // waiters, who then find ABANDONED in the state word.
                unsafe { self.raw.unlock() };
                Err(LockError::AbandonedByThread { pid: dead })
            }
            Err(LockError::NotRecoverable) => {
                if self.state.load(Ordering::Acquire) == ABANDONED {
                    return Err(LockError::AbandonedByThread { pid: self.owner.load(Ordering::Relaxed) });
                }
                let _ = self.state.compare_exchange(READY, NOT_RECOVERABLE, Ordering::Release, Ordering::Relaxed);
                Err(LockError::NotRecoverable)
            }
            Err(e) => Err(e),
        }
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
        self.settle_slow(self.raw.nonzero_outcome(r), Deadline::never())
    }

    /// Block until acquired. See [`RawMutex::lock`]. Waits at most [`INIT_STALL`] for
    /// another process's first-use initialisation.
    #[inline]
    pub fn lock(&self) -> Result<Acquired, LockError> {
        self.lock_until(Deadline::never())
    }

    /// Acquire only if free now. See [`RawMutex::try_lock`].
    #[inline]
    pub fn try_lock(&self) -> Result<Acquired, LockError> {
        let now = Deadline::after(Duration::ZERO);
        self.settle(self.get(now)?.try_lock(), now)
    }

    /// Block until acquired or the timeout passes (CLOCK_MONOTONIC).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<Acquired, LockError> {
        self.lock_until(Deadline::after(timeout))
    }

    /// Block until acquired or `deadline` passes; every wait on the way (another
    /// process's initialisation included) honours it.
    pub(crate) fn lock_until(&self, deadline: Deadline) -> Result<Acquired, LockError> {
        // Without a deadline, another process's initialisation is waited for at most
        // INIT_STALL (as in `lock`).
        let init = if deadline.remaining().is_none() { Deadline::after(INIT_STALL) } else { deadline };
        self.settle(self.get(init)?.lock_until(deadline), deadline)
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
