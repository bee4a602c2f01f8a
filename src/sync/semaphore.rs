//! `Semaphore`: a counting semaphore on one futex word, with an optional bound.
//!
//! # Protocol
//!
//! One 64-bit word: the low half is the number of permits (the futex word), the high half
//! counts registered sleepers.
//!
//! - **acquire**: CAS `value → value - 1` while `value > 0`, spinning first as the wait
//!   policy says ([`WaitPolicy`], adaptive by default). Otherwise register (`fetch_add` of one sleeper), then loop: take a
//!   permit *and* unregister in one CAS when `value > 0`, else `FUTEX_WAIT` while the
//!   value half is 0. On timeout: one last CAS that either takes a permit or
//!   unregisters.
//! - **release(n)**: one CAS `value → value + n`, refused with
//!   [`LockError::TooManyReleases`] past the bound; if the old word showed sleepers,
//!   `FUTEX_WAKE` up to `n` of them.
//!
//! Registration, taking and releasing are read-modify-writes of the same word, so a
//! release either sees a sleeper (and wakes it) or happened before the sleeper
//! registered (which then sees the permit). The loom models in `loom_tests.rs` check
//! this.
//!
//! # When a process dies
//!
//! A semaphore does not know who holds its permits: they may be released by anyone (a
//! producer releases what a consumer acquires). So, as with POSIX and Python semaphores,
//! **permits held by a process that dies are lost**; use the timed variants, or a
//! [`RobustSemaphore`](super::RobustSemaphore), whose permits are owned by their holder
//! and come back when it dies. A waiter killed while sleeping leaves the sleeper count
//! raised: later releases make one futex-wake call that finds nobody, nothing worse.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::LockError;
use super::shim::{Futex64, Half, Wait};
use super::wait::{Cadence, WaitPolicy, key_of, spin_then};
use crate::sys::Deadline;

const SLEEPER: u64 = 1 << 32;

fn value(s: u64) -> u32 {
    Half::Low.of(s)
}

/// A counting semaphore in shared memory, like Python's `multiprocessing.Semaphore`, or
/// `BoundedSemaphore` when [bounded](Self::bounded). `#[repr(C)]`, position independent;
/// all-zero bytes are an unbounded semaphore with no permits.
///
/// ```
/// use std::time::Duration;
/// use shmkit::sync::Semaphore;
///
/// let sem = Semaphore::bounded(2);
/// sem.acquire()?;
/// sem.acquire()?;
/// assert!(sem.try_acquire().is_err());
/// assert!(sem.acquire_timeout(Duration::from_millis(10)).is_err());
/// sem.release()?;
/// sem.release()?;
/// assert!(sem.release().is_err()); // a third release would exceed the bound
/// # Ok::<(), shmkit::LockError>(())
/// ```
#[repr(C)]
pub struct Semaphore {
    word: Futex64,
    limit: u32,
    bounded: u32,
}

impl std::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semaphore").field("value", &self.value()).field("limit", &self.limit()).finish()
    }
}

impl Semaphore {
    /// An unbounded semaphore with `permits` permits.
    pub fn new(permits: u32) -> Self {
        Self { word: Futex64::new(permits as u64), limit: 0, bounded: 0 }
    }

    /// A bounded semaphore (Python's `BoundedSemaphore`): `permits` permits, and a release
    /// that would exceed `permits` fails with [`LockError::TooManyReleases`].
    pub fn bounded(permits: u32) -> Self {
        Self::with_limit(permits, permits)
    }

    /// `permits` permits now, at most `limit` ever (`permits` is capped at `limit`).
    pub fn with_limit(permits: u32, limit: u32) -> Self {
        Self { word: Futex64::new(permits.min(limit) as u64), limit, bounded: 1 }
    }

    /// The bound, `None` when unbounded.
    pub fn limit(&self) -> Option<u32> {
        (self.bounded != 0).then_some(self.limit)
    }

    /// Permits available now (a snapshot).
    pub fn value(&self) -> u32 {
        value(self.word.load(Ordering::Relaxed))
    }

    /// Take a permit, waiting as long as it takes (spinning first as
    /// [`WaitPolicy::process_default`] says: adaptive unless set).
    pub fn acquire(&self) -> Result<(), LockError> {
        self.acquire_inner(Some(Deadline::never()), WaitPolicy::process_default())
    }

    /// Take a permit if one is available now ([`LockError::WouldBlock`] otherwise).
    pub fn try_acquire(&self) -> Result<(), LockError> {
        self.acquire_inner(None, WaitPolicy::Park)
    }

    /// Take a permit, or fail with [`LockError::Timeout`] after `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), LockError> {
        self.acquire_inner(Some(Deadline::after(timeout)), WaitPolicy::process_default())
    }

    /// Take a permit, waiting under `policy` (instead of the process default), for at most
    /// `timeout` if given ([`LockError::Timeout`] then).
    ///
    /// ```
    /// use shmkit::sync::{Semaphore, WaitPolicy};
    /// let sem = Semaphore::new(1);
    /// sem.acquire_with(WaitPolicy::Park, None)?;
    /// # Ok::<(), shmkit::LockError>(())
    /// ```
    pub fn acquire_with(&self, policy: WaitPolicy, timeout: Option<Duration>) -> Result<(), LockError> {
        self.acquire_inner(Some(Deadline::from_timeout(timeout)), policy)
    }

    /// Take a permit, spinning up to `spins` times (counted as 10 ns each) before sleeping
    /// in the kernel, with an optional timeout: a shortcut to
    /// [`acquire_with`](Self::acquire_with)`(WaitPolicy::Spin(spins × 10 ns), timeout)`.
    ///
    /// ```
    /// # #![allow(deprecated)]
    /// let sem = shmkit::sync::Semaphore::new(1);
    /// sem.acquire_spin(1000, None)?;
    /// # Ok::<(), shmkit::LockError>(())
    /// ```
    #[deprecated(note = "acquire() spins adaptively by default; for a fixed budget use \
                         acquire_with(WaitPolicy::Spin(duration), timeout)")]
    pub fn acquire_spin(&self, spins: u32, timeout: Option<Duration>) -> Result<(), LockError> {
        self.acquire_with(WaitPolicy::Spin(Duration::from_nanos(spins as u64 * 10)), timeout)
    }

    /// Take a permit without waiting; `Ok(false)` when none is available.
    fn take(&self) -> bool {
        let mut s = self.word.load(Ordering::Relaxed);
        while value(s) > 0 {
            match self.word.compare_exchange_weak(s, s - 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
        false
    }

    fn acquire_inner(&self, deadline: Option<Deadline>, policy: WaitPolicy) -> Result<(), LockError> {
        if self.take() {
            return Ok(());
        }
        let Some(deadline) = deadline else { return Err(LockError::WouldBlock) };
        let ready = || (value(self.word.load(Ordering::Relaxed)) > 0 && self.take()).then_some(Ok(()));
        spin_then(policy, Cadence::HandOff, key_of(self), &deadline, ready, || self.sleep(&deadline))
    }

    /// Register as a sleeper and sleep until a permit is taken or the deadline passes.
    fn sleep(&self, deadline: &Deadline) -> Result<(), LockError> {
        let mut s = self.word.fetch_add(SLEEPER, Ordering::Relaxed) + SLEEPER;
        loop {
            if value(s) > 0 {
                match self.word.compare_exchange_weak(s, s - 1 - SLEEPER, Ordering::Acquire, Ordering::Relaxed) {
                    Ok(_) => return Ok(()),
                    Err(now) => {
                        s = now;
                        continue;
                    }
                }
            }
            match self.word.wait(Half::Low, 0, deadline, None) {
                Wait::Woken => s = self.word.load(Ordering::Relaxed),
                Wait::TimedOut => return self.give_up(),
            }
        }
    }

    /// After a timeout: take a permit that arrived meanwhile, or unregister. One CAS either
    /// way, so a release that counted on this sleeper is never lost.
    fn give_up(&self) -> Result<(), LockError> {
        let mut s = self.word.load(Ordering::Relaxed);
        loop {
            let (next, outcome) =
                if value(s) > 0 { (s - 1 - SLEEPER, Ok(())) } else { (s - SLEEPER, Err(LockError::Timeout)) };
            match self.word.compare_exchange_weak(s, next, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return outcome,
                Err(now) => s = now,
            }
        }
    }

    /// Return a permit, waking one waiter if any. Fails with
    /// [`LockError::TooManyReleases`] when the semaphore is bounded and already full (or
    /// would pass `u32::MAX` permits).
    pub fn release(&self) -> Result<(), LockError> {
        self.release_n(1)
    }

    /// Return `n` permits at once, waking up to `n` waiters. All or nothing.
    pub fn release_n(&self, n: u32) -> Result<(), LockError> {
        if n == 0 {
            return Ok(());
        }
        let limit = if self.bounded != 0 { self.limit } else { u32::MAX };
        let mut s = self.word.load(Ordering::Relaxed);
        loop {
            match value(s).checked_add(n) {
                Some(v) if v <= limit => {}
                _ => return Err(LockError::TooManyReleases { limit }),
            }
            match self.word.compare_exchange_weak(s, s + n as u64, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        let sleepers = Half::High.of(s);
        if sleepers > 0 {
            self.word.wake(Half::Low, n.min(sleepers));
        }
        Ok(())
    }
}
