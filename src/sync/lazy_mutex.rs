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
//! | 5 `READY_DIED`             | usable; the first acquirer gets [`Acquired::OwnerDied`]      |
//! | 3 `NOT_RECOVERABLE`        | an owner-died guard was released unrepaired: every use fails |
//! | `SUSPECT` bit \| pid       | a thread of process `pid` died holding it: refused while `pid` lives |
//! | anything else              | corrupt: [`LockError::Corrupt`]                              |
//!
//! `NOT_RECOVERABLE` and `SUSPECT` are checked *before* calling into glibc, so no thread
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
//! (waiting, up to the caller's deadline, for one that is still exiting), every borrow
//! ended with it and the lock comes back as [`Acquired::OwnerDied`]; otherwise — this very
//! process included — the state word becomes `SUSPECT|pid`, the mutex itself is repaired
//! and released (so nothing inside glibc stays stuck or not recoverable), and every caller
//! gets [`LockError::AbandonedByThread`] naming the pid *for as long as that process
//! lives*. The first caller that finds it ended CASes `SUSPECT|pid → READY_DIED`, and the
//! next acquirer gets `OwnerDied`: a slow exit (a killed process with gigabytes to free)
//! delays the verdict, it never makes it permanent. The state word alone refuses callers
//! while `SUSPECT`: every grant re-checks it (below), so the mutex is never re-initialised.
//!
//! The owner word is cleared by every unlock of its owner, so a process killed between
//! glibc's grant and its `owner` store (no guard existed yet) reads as "ended". Every
//! acquisition re-checks `state` after glibc grants the lock, so a caller that read
//! `READY` just before it changed never keeps a lock the state word refuses.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{Acquired, LockError, RawMutex};
use crate::sys::{Deadline, futex, owner, process};

const UNINIT: u32 = 0;
const READY: u32 = 2;
const NOT_RECOVERABLE: u32 = 3;
/// Usable, and the first acquirer is told the previous owner died (set after a takeover).
const READY_DIED: u32 = 5;
/// Set in `state` while the process whose pid fills the other bits initialises the mutex.
const INITIALISING: u32 = 0x8000_0000;
/// Set in `state` while a thread of the process whose pid fills the other bits died
/// holding the lock and that process may still live.
const SUSPECT: u32 = 0x4000_0000;
const PID_BITS: u32 = 0x3fff_ffff;

/// How long a user without a deadline ([`LazyRawMutex::lock`]) waits for another process's
/// initialisation before reporting [`LockError::InitStalled`].
pub const INIT_STALL: Duration = Duration::from_secs(1);

/// How long a locker without a deadline that found a dead owner thread waits for that
/// thread's process to finish exiting (a killed process's threads die one by one, and a
/// large one takes a while to free its memory) before reporting
/// [`LockError::AbandonedByThread`] for now. Timed calls wait until their deadline.
const OWNER_EXIT_WAIT: Duration = Duration::from_secs(10);

/// How long to wait for a dead owner thread's process to end: until `deadline`, or
/// [`OWNER_EXIT_WAIT`] without one.
fn exit_wait(deadline: Deadline) -> Duration {
    deadline.remaining().unwrap_or(OWNER_EXIT_WAIT)
}

fn is_suspect(s: u32) -> bool {
    s & SUSPECT != 0 && s & INITIALISING == 0
}

/// How long [`LazyRawMutex::try_lock`] waits for a first-use initialisation in progress.
pub const TRY_INIT_GRACE: Duration = Duration::from_millis(10);

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

default_is_new!(LazyRawMutex);

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
    /// initialiser until `init`), or, if a thread of a process that may still live died
    /// holding it, waiting until `deadline` for that process to end.
    #[inline]
    fn get(&self, init: Deadline, deadline: Deadline) -> Result<&RawMutex, LockError> {
        if self.state.load(Ordering::Acquire) == READY { Ok(&self.raw) } else { self.init_slow(init, deadline) }
    }

    #[cold]
    fn init_slow(&self, init: Deadline, deadline: Deadline) -> Result<&RawMutex, LockError> {
        let me = INITIALISING | owner::pid();
        loop {
            let seen = self.state.load(Ordering::Acquire);
            match seen {
                READY | READY_DIED => return Ok(&self.raw),
                NOT_RECOVERABLE => return Err(LockError::NotRecoverable),
                UNINIT => {
                    if self.state.compare_exchange(UNINIT, me, Ordering::Acquire, Ordering::Acquire).is_ok() {
                        return self.initialise(me);
                    }
                }
                s if s & INITIALISING != 0 => {
                    let by = s & !INITIALISING;
                    // Only the initialiser's end lets anyone else in: nobody holds a mutex
                    // that never was READY, and a dead process writes nothing more.
                    if s != me && process::process_ended(by, Duration::ZERO) {
                        if self.state.compare_exchange(s, me, Ordering::Acquire, Ordering::Acquire).is_ok() {
                            return self.initialise(me);
                        }
                        continue;
                    }
                    if init.passed() {
                        return Err(LockError::InitStalled { pid: by });
                    }
                    futex::wait(&self.state, s, init, Some(Duration::from_millis(10)));
                }
                s if s & SUSPECT != 0 => {
                    let pid = s & PID_BITS;
                    if !process::process_ended(pid, exit_wait(deadline)) {
                        return Err(LockError::AbandonedByThread { pid });
                    }
                    // That process ended, and every borrow with it. The mutex itself is
                    // consistent and free (or held by a caller about to give it back): the
                    // next acquirer is told its previous owner died.
                    let _ = self.state.compare_exchange(s, READY_DIED, Ordering::AcqRel, Ordering::Acquire);
                }
                _ => return Err(LockError::Corrupt),
            }
        }
    }

    /// Run `pthread_mutex_init` as the owner of initialisation (`state == me`) and publish.
    fn initialise(&self, me: u32) -> Result<&RawMutex, LockError> {
        // SAFETY: `state == me` makes this thread the only one that may touch `raw` until
        // it publishes: everybody else waits in `init_slow` (or takes over only after this
        // whole process ended), and nobody holds a mutex that never was READY. `raw` is
        // inside an UnsafeCell, so writing through a pointer derived from `&self` is allowed.
        let r = unsafe { RawMutex::init(std::ptr::from_ref(&self.raw).cast_mut()) };
        self.owner.store(0, Ordering::Relaxed);
        let next = if r.is_ok() { READY } else { UNINIT };
        let _ = self.state.compare_exchange(me, next, Ordering::Release, Ordering::Relaxed);
        futex::wake_all(&self.state);
        r?;
        Ok(&self.raw)
    }

    /// Whether the one-time initialisation has happened.
    pub fn is_initialised(&self) -> bool {
        matches!(self.state.load(Ordering::Acquire), READY | READY_DIED)
    }

    /// Whether the lock cannot be acquired again while this process runs: not
    /// recoverable, or abandoned by a thread of this process.
    pub(crate) fn is_lost_to_this_process(&self) -> bool {
        let s = self.state.load(Ordering::Acquire);
        s == NOT_RECOVERABLE || s == SUSPECT | (owner::pid() & PID_BITS)
    }

    /// Whether nobody alive can hold this lock or a borrow it handed out: no thread holds
    /// it, and the process that last held it — whose thread died holding it, if so — has
    /// ended (or it was never held). A lock abandoned by a thread of a process that lives
    /// (this one included) is not. Never waits (a killed process still exiting counts as
    /// alive); a hint, which may change at any moment, for deciding whether a slot may be
    /// reclaimed (confirm by acquiring it) or counted as in use.
    pub(crate) fn left_by_ended_process(&self) -> bool {
        let s = self.state.load(Ordering::Acquire);
        let pid = match s {
            UNINIT => return true,
            READY | READY_DIED if self.raw.looks_locked() => return false,
            READY | READY_DIED => self.owner.load(Ordering::Relaxed),
            s if is_suspect(s) => s & PID_BITS,
            _ => return false,
        };
        process::process_ended(pid, Duration::ZERO)
    }

    /// The pid of the process that holds the lock (0: nobody, or not known). A hint for
    /// error messages: it may change at any moment.
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

    /// After glibc granted the lock cleanly: record this process as the owner, or give the
    /// lock back if the state word says it must not be granted (see [`Self::settle_slow`]).
    #[inline]
    pub(crate) fn granted(&self) -> bool {
        if self.state.load(Ordering::Acquire) == READY {
            self.owner.store(owner::pid(), Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Settle an acquisition outcome: record the owner, decide what a dead owner means,
    /// and mirror a not-recoverable state in the state word.
    #[inline]
    fn settle(&self, r: Result<Acquired, LockError>, deadline: Deadline) -> Result<Acquired, LockError> {
        match r {
            Ok(Acquired::Clean) if self.granted() => Ok(Acquired::Clean),
            other => self.settle_slow(other, deadline),
        }
    }

    #[cold]
    fn settle_slow(&self, r: Result<Acquired, LockError>, deadline: Deadline) -> Result<Acquired, LockError> {
        match r {
            Ok(Acquired::Clean) => {
                let s = self.state.load(Ordering::Acquire);
                if s == READY {
                    self.owner.store(owner::pid(), Ordering::Relaxed);
                    return Ok(Acquired::Clean);
                }
                if s == READY_DIED
                    && self.state.compare_exchange(READY_DIED, READY, Ordering::AcqRel, Ordering::Relaxed).is_ok()
                {
                    // The first acquirer after a takeover: its previous owner died.
                    self.owner.store(owner::pid(), Ordering::Relaxed);
                    return Ok(Acquired::OwnerDied);
                }
                // Granted by glibc to a caller that read READY before the state changed
                // (it was waiting when another caller found the owner thread dead). If the
                // state names a process that ends by our deadline (a killed one that was
                // still exiting), every borrow ended with it: keep the lock, and be the
                // acquirer told of the death, as `init_slow` and the owner-died path do.
                if is_suspect(s) && process::process_ended(s & PID_BITS, exit_wait(deadline)) {
                    self.owner.store(owner::pid(), Ordering::Relaxed);
                    self.settle_state(|x| x == s || x == READY_DIED, READY);
                    return Ok(Acquired::OwnerDied);
                }
                // Otherwise the state word refuses it. Give it back untouched.
                // SAFETY: we hold the lock (glibc just granted it).
                unsafe { self.raw.unlock() };
                Err(self.refusal(s))
            }
            Ok(Acquired::OwnerDied) => {
                let dead = self.owner.load(Ordering::Relaxed);
                if process::process_ended(dead, exit_wait(deadline)) {
                    // Every borrow ended with that process. (A state left SUSPECT by a
                    // locker that died before giving the lock back is cleared too.)
                    self.owner.store(owner::pid(), Ordering::Relaxed);
                    self.settle_state(|s| s == READY_DIED || is_suspect(s), READY);
                    return Ok(Acquired::OwnerDied);
                }
                // A thread of a process that may still live died holding the lock: borrows
                // it handed out may still be alive there. Refuse it while that process
                // lives: the state word says so, and every grant re-checks it. The mutex
                // itself is repaired and released, so nothing inside glibc stays stuck.
                self.settle_state(|s| s == READY || s == READY_DIED || is_suspect(s), SUSPECT | (dead & PID_BITS));
                // SAFETY: we hold the lock (EOWNERDEAD acquires it).
                let _ = unsafe { self.raw.mark_consistent() };
                // SAFETY: as above.
                unsafe { self.unlock() };
                Err(LockError::AbandonedByThread { pid: dead })
            }
            // glibc is not recoverable only after an owner-died guard was released
            // unrepaired, which is for good: mirror it in the state word.
            Err(LockError::NotRecoverable) => {
                let _ = self.state.compare_exchange(READY, NOT_RECOVERABLE, Ordering::Release, Ordering::Relaxed);
                Err(LockError::NotRecoverable)
            }
            Err(e) => Err(e),
        }
    }

    /// Move the state word to `to` if its current value satisfies `from` (while holding
    /// the lock).
    fn settle_state(&self, from: impl Fn(u32) -> bool, to: u32) {
        let mut s = self.state.load(Ordering::Acquire);
        while from(s) && s != to {
            match self.state.compare_exchange(s, to, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(now) => s = now,
            }
        }
    }

    /// The error for a state that refuses the lock.
    fn refusal(&self, s: u32) -> LockError {
        match s {
            NOT_RECOVERABLE => LockError::NotRecoverable,
            s if s & INITIALISING != 0 => LockError::InitStalled { pid: s & !INITIALISING },
            s if s & SUSPECT != 0 => LockError::AbandonedByThread { pid: s & PID_BITS },
            _ => LockError::Corrupt,
        }
    }

    /// The mutex if it is initialised and usable, without the slow path.
    #[inline]
    pub(crate) fn ready(&self) -> Option<&RawMutex> {
        (self.state.load(Ordering::Acquire) == READY).then_some(&self.raw)
    }

    /// As [`LazyRawMutex::lock`], for the outcome `r` of locking the mutex
    /// [`LazyRawMutex::ready`] returned (a nonzero code, or a clean grant that
    /// [`LazyRawMutex::granted`] refused).
    #[cold]
    pub(crate) fn outcome(&self, r: Result<Acquired, LockError>) -> Result<Acquired, LockError> {
        self.settle_slow(r, Deadline::never())
    }

    /// The outcome of a nonzero code from [`RawMutex::lock_code`] on [`Self::ready`]'s mutex.
    #[cold]
    pub(crate) fn nonzero_outcome(&self, r: libc::c_int) -> Result<Acquired, LockError> {
        self.outcome(self.raw.nonzero_outcome(r))
    }

    /// Block until acquired. See [`RawMutex::lock`]. Waits at most [`INIT_STALL`] for
    /// another process's first-use initialisation.
    #[inline]
    pub fn lock(&self) -> Result<Acquired, LockError> {
        self.lock_until(Deadline::never())
    }

    /// Acquire only if free now. See [`RawMutex::try_lock`]. Another thread's or process's
    /// first-use initialisation in progress (microseconds) is waited for up to
    /// [`TRY_INIT_GRACE`]; one that stays stalled longer is [`LockError::InitStalled`].
    #[inline]
    pub fn try_lock(&self) -> Result<Acquired, LockError> {
        let now = Deadline::after(Duration::ZERO);
        let raw = match self.ready() {
            Some(raw) => raw,
            None => self.get(Deadline::after(TRY_INIT_GRACE), now)?,
        };
        self.settle(raw.try_lock(), now)
    }

    /// Block until acquired or the timeout passes (CLOCK_MONOTONIC).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<Acquired, LockError> {
        self.lock_until(Deadline::after(timeout))
    }

    /// Block until acquired or `deadline` passes; every wait on the way (another
    /// process's initialisation, a dead owner's process ending) honours it.
    pub(crate) fn lock_until(&self, deadline: Deadline) -> Result<Acquired, LockError> {
        // Without a deadline, another process's initialisation is waited for at most
        // INIT_STALL (as in `lock`).
        let init = if deadline.remaining().is_none() { Deadline::after(INIT_STALL) } else { deadline };
        self.settle(self.get(init, deadline)?.lock_until(deadline), deadline)
    }

    /// Declare the state protected by a lock acquired with [`Acquired::OwnerDied`]
    /// consistent again. Harmless on a lock that is consistent already (after a takeover
    /// the mutex itself is fresh; only its acquirer was told of the death).
    ///
    /// # Safety
    ///
    /// The calling thread must hold the lock.
    pub unsafe fn mark_consistent(&self) -> Result<(), LockError> {
        // SAFETY: the caller holds the lock, so it was initialised (it was acquired).
        match unsafe { self.raw.mark_consistent() } {
            // EINVAL on a robust mutex we hold: it is not inconsistent.
            Err(LockError::Os(e)) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
            r => r,
        }
    }

    /// Release the lock.
    ///
    /// # Safety
    ///
    /// The calling thread must hold the lock.
    #[inline]
    pub unsafe fn unlock(&self) {
        // The owner word names a holder only while it holds (see the module docs). (A guard
        // only reaches a forked child through an `unsafe` fork: the safe ones refuse while
        // the forking thread holds a lock.)
        self.owner.store(0, Ordering::Relaxed);
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
        self.settle_state(|s| s == READY || s == READY_DIED, NOT_RECOVERABLE);
        // SAFETY: the caller holds the lock. glibc makes an inconsistent mutex not
        // recoverable on unlock and wakes its waiters, who then fail (after a takeover from
        // SUSPECT the mutex is consistent, and the state word refuses it instead).
        unsafe { self.unlock() }
    }
}
