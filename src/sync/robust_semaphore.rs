//! `RobustSemaphore<N>`: a semaphore whose permits come back when their holder dies.
//!
//! Python's `Semaphore` (and POSIX `sem_t`, and [`Semaphore`](super::Semaphore)) cannot
//! know who holds a permit, so a holder killed with SIGKILL takes its permit to the grave
//! and, once all permits are lost, everybody hangs. Here each of the `N` permits *is* a
//! robust owner mutex, like the slots of the claim table in `shared::claims`:
//!
//! - **acquire**: `try_lock` the slots in turn. A free one is taken; one whose holder
//!   died comes back owner-died and is taken too (the permit is recovered, and
//!   [`Permit::recovered`] says so). If every slot is held, sleep on a [`ParkWord`]
//!   that releases bump, and rescan when woken or every 10 ms (a holder that died did
//!   not bump, but its slot is free at the next scan).
//! - **release**: dropping the [`Permit`] unlocks its slot and bumps the park word.
//!
//! Permits are therefore held by a *thread* and released by dropping the guard on that
//! thread (`!Send`): this is a resource-limiting semaphore ("at most N processes in
//! here"), not a signalling one. For producer/consumer signalling, where one process
//! releases what another acquired, use [`Semaphore`](super::Semaphore).
//!
//! # When a process dies
//!
//! Its permits return to the pool: the next acquirer that scans finds them, at the latest
//! 10 ms after the death if it was already waiting. Nothing is inconsistent, since a
//! permit protects no data of its own.

use std::marker::PhantomData;
use std::time::Duration;

use super::park::ParkWord;
use super::shim::Wait;
use super::wait::WaitPolicy;
use super::wait_for::wait_variants;
use super::{Acquired, LazyRawMutex, LockError};
use crate::sys::Deadline;

const RESCAN: Duration = Duration::from_millis(10);

/// A semaphore of `N` permits, each owned by the thread that holds it and recovered when
/// its process dies. `#[repr(C)]`, position independent; all-zero bytes are a semaphore
/// with all `N` permits free.
///
/// ```
/// use shmkit::sync::RobustSemaphore;
/// let slots = RobustSemaphore::<2>::new();
/// let a = slots.acquire()?;
/// let b = slots.try_acquire()?;
/// assert!(slots.try_acquire().is_err()); // both permits held
/// drop(a);
/// let c = slots.acquire_timeout(std::time::Duration::from_millis(10))?;
/// assert!(!c.recovered());
/// # drop((b, c));
/// # Ok::<(), shmkit::LockError>(())
/// ```
#[repr(C)]
pub struct RobustSemaphore<const N: usize> {
    park: ParkWord,
    slots: [LazyRawMutex; N],
}

impl<const N: usize> Default for RobustSemaphore<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> std::fmt::Debug for RobustSemaphore<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RobustSemaphore").field("permits", &N).finish_non_exhaustive()
    }
}

impl<const N: usize> RobustSemaphore<N> {
    /// All `N` permits free.
    pub fn new() -> Self {
        Self { park: ParkWord::new(), slots: std::array::from_fn(|_| LazyRawMutex::new()) }
    }

    /// Number of permits.
    pub fn permits(&self) -> usize {
        N
    }

    /// Permits lost while this process runs (their slot is not recoverable, or abandoned
    /// by one of its threads).
    fn lost(&self) -> usize {
        self.slots.iter().filter(|s| s.is_lost_to_this_process()).count()
    }

    /// Try every slot once.
    fn scan(&self) -> Result<Option<Permit<'_, N>>, LockError> {
        let mut mine = 0;
        let mut lost = None;
        for (i, slot) in self.slots.iter().enumerate() {
            match slot.try_lock() {
                Ok(how) => {
                    let recovered = how == Acquired::OwnerDied;
                    if recovered {
                        // A permit guards no data: the dead holder left nothing to repair.
                        // SAFETY: this thread holds the slot mutex.
                        if let Err(e) = unsafe { slot.mark_consistent() } {
                            // SAFETY: as above.
                            unsafe { slot.unlock() };
                            return Err(e);
                        }
                    }
                    return Ok(Some(Permit { sem: self, index: i, recovered, _not_send: PhantomData }));
                }
                // Held, or being initialised by another user right now.
                Err(LockError::WouldBlock | LockError::InitStalled { .. }) => {}
                Err(LockError::WouldDeadlock) => mine += 1,
                // A thread of another process exited holding this permit (a leaked one may
                // still guard a per-holder resource): it comes back once that process ended.
                Err(LockError::AbandonedByThread { pid }) if pid != crate::sys::owner::pid() => {}
                // Unusable while this process runs (a thread of it exited holding the
                // permit), or for ever (marking a recovered slot failed). The others work.
                Err(e @ (LockError::NotRecoverable | LockError::AbandonedByThread { .. })) => lost = Some(e),
                Err(e) => return Err(e),
            }
        }
        match lost {
            // No permit can ever come back to this thread: fail instead of waiting for ever.
            Some(e) if mine + self.lost() == N => Err(e),
            _ if mine == N => Err(LockError::WouldDeadlock),
            _ => Ok(None),
        }
    }

    fn acquire_inner(&self, deadline: Option<Deadline>) -> Result<Permit<'_, N>, LockError> {
        if let Some(p) = self.scan()? {
            return Ok(p);
        }
        let Some(deadline) = deadline else { return Err(LockError::WouldBlock) };
        loop {
            let seq = self.park.prepare();
            match self.scan() {
                Ok(None) => {}
                r => {
                    self.park.done();
                    return r.and_then(|p| p.ok_or(LockError::Corrupt));
                }
            }
            let w = self.park.wait(WaitPolicy::process_default(), seq, &deadline, Some(RESCAN));
            self.park.done();
            if w == Wait::TimedOut {
                return match self.scan()? {
                    Some(p) => Ok(p),
                    None => Err(LockError::Timeout),
                };
            }
        }
    }

    wait_variants! {
        /// Take a permit, waiting as long as it takes. [`LockError::WouldDeadlock`] when this
        /// thread holds all `N`.
        pub fn acquire(&self) -> Result<Permit<'_, N>, LockError>;
        /// Take a permit if one is free now ([`LockError::WouldBlock`] otherwise).
        pub fn try_acquire;
        /// Take a permit, or fail with [`LockError::Timeout`] after `timeout`.
        pub fn acquire_timeout;
        => acquire_inner
    }
}

/// A permit of a [`RobustSemaphore`], returned on drop. `!Send`.
#[must_use = "the permit is returned as soon as it is dropped"]
pub struct Permit<'a, const N: usize> {
    sem: &'a RobustSemaphore<N>,
    index: usize,
    recovered: bool,
    _not_send: PhantomData<*const ()>,
}

impl<const N: usize> std::fmt::Debug for Permit<'_, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit").field("slot", &self.index).field("recovered", &self.recovered).finish()
    }
}

impl<const N: usize> Permit<'_, N> {
    /// Whether this permit was taken back from a holder that died.
    pub fn recovered(&self) -> bool {
        self.recovered
    }

    /// Which of the `N` slots this permit is (useful to index per-holder resources).
    pub fn slot(&self) -> usize {
        self.index
    }
}

impl<const N: usize> Drop for Permit<'_, N> {
    fn drop(&mut self) {
        if let Some(slot) = self.sem.slots.get(self.index) {
            // SAFETY: this thread locked the slot in `scan`; the permit is !Send.
            unsafe { slot.unlock() };
        }
        self.sem.park.notify(1);
    }
}
