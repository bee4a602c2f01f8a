//! `Condvar`: a process-shared condition variable for shmkit's [`Mutex`].
//!
//! # Why not `pthread_cond_t`
//!
//! glibc's process-shared condition variable keeps waiter bookkeeping (group references
//! and signal counts) inside the shared object; a waiter SIGKILLed at the wrong moment
//! leaves it unbalanced, and `pthread_cond_wait` on a robust mutex whose owner died has
//! no clean way to hand `EOWNERDEAD` back. So this is a futex sequence counter instead
//! (see the `park` module): a waiter registers and reads the sequence while it still
//! holds the mutex, unlocks, sleeps while the sequence is unchanged, then relocks; a
//! notification bumps the sequence and wakes sleepers. A notification that comes after
//! the waiter unlocked changes the sequence, so it cannot be lost.
//!
//! # When a process dies
//!
//! - A **waiter** dies: it held nothing while sleeping, so nothing needs repair. If it
//!   was killed after a `notify_one` picked it but before it relocked, that notification is
//!   spent: use `notify_all`, or timed waits, where waiters may die.
//! - A **notifier** dies: the notification never comes; timed waits return.
//! - The **mutex holder** dies: the waiter's relock reports it as
//!   [`AcquireError::OwnerDied`] carrying the guard, exactly as [`Mutex::lock`] does.
//!
//! As with every condition variable, wake-ups may be spurious: wait in a loop, or use
//! [`wait_while`](Condvar::wait_while).

use std::time::Duration;

use super::error::{AcquireError, AcquireResult};
use super::park::ParkWord;
use super::shim::Wait;
use super::wait::WaitPolicy;
use super::{Mutex, MutexGuard};
use crate::sys::Deadline;

/// A condition variable in shared memory, used with a shmkit [`Mutex`] (like Python's
/// `Condition` with its lock). `#[repr(C)]`, position independent; all-zero bytes are a
/// condition variable nobody waits on. It is not tied to one mutex, but every waiter
/// and notifier of one condition must use the same mutex.
///
/// ```
/// use std::time::Duration;
/// use shmkit::sync::{Condvar, Mutex};
///
/// let ready = Mutex::new(0u32);
/// let cv = Condvar::new();
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         *ready.lock().unwrap() = 1;
///         cv.notify_all();
///     });
///     let g = cv.wait_while(ready.lock().unwrap(), |r| *r == 0).unwrap();
///     assert_eq!(*g, 1);
/// });
/// let (_g, timed_out) = cv.wait_timeout(ready.lock()?, Duration::from_millis(1))?;
/// assert!(timed_out.timed_out());
/// # Ok::<(), shmkit::LockError>(())
/// ```
#[repr(C)]
pub struct Condvar {
    park: ParkWord,
}

/// Whether a timed wait returned because its timeout passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// `true` when the timeout passed (the condition may still hold: check it).
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

default_is_new!(Condvar);

impl std::fmt::Debug for Condvar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condvar").finish_non_exhaustive()
    }
}

impl Condvar {
    /// A condition variable nobody waits on.
    pub fn new() -> Self {
        Self { park: ParkWord::new() }
    }

    /// Unlock `guard`, sleep until notified (or spuriously), relock and return the guard.
    ///
    /// Errors: the relock's, notably [`AcquireError::OwnerDied`] when another holder of
    /// the mutex died while this thread slept.
    pub fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> AcquireResult<MutexGuard<'a, T>> {
        self.wait_until(guard, &Deadline::never(), WaitPolicy::process_default()).map(|(g, _)| g)
    }

    /// As [`wait_timeout`](Self::wait_timeout) (or [`wait`](Self::wait) when `timeout` is
    /// `None`), spinning under `policy` instead of the process default before sleeping.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmkit::sync::{Condvar, Mutex, WaitPolicy};
    /// let (m, cv) = (Mutex::new(0u8), Condvar::new());
    /// let (_g, r) = cv.wait_with(m.lock()?, WaitPolicy::Park, Some(Duration::from_millis(1)))?;
    /// assert!(r.timed_out());
    /// # Ok::<(), shmkit::LockError>(())
    /// ```
    pub fn wait_with<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        policy: WaitPolicy,
        timeout: Option<Duration>,
    ) -> Result<(MutexGuard<'a, T>, WaitTimeoutResult), AcquireError<MutexGuard<'a, T>>> {
        self.wait_until(guard, &Deadline::from_timeout(timeout), policy)
    }

    /// As [`wait`](Self::wait), but return after at most `timeout`, relock included:
    /// unlike std and POSIX condition variables, if the mutex is still held by another
    /// thread or process (say, one stopped with `SIGSTOP`) when the time is up, the call
    /// returns [`LockError::Timeout`](super::LockError::Timeout) without the guard rather
    /// than wait past its deadline.
    pub fn wait_timeout<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> Result<(MutexGuard<'a, T>, WaitTimeoutResult), AcquireError<MutexGuard<'a, T>>> {
        self.wait_until(guard, &Deadline::after(timeout), WaitPolicy::process_default())
    }

    /// Wait while `condition` holds (checked under the lock before every sleep).
    pub fn wait_while<'a, T>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> AcquireResult<MutexGuard<'a, T>> {
        while condition(&mut guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// Wait while `condition` holds, for at most `timeout` in total (relocks included,
    /// as in [`wait_timeout`](Self::wait_timeout)). The flag is `true` when the time ran
    /// out with the condition still holding.
    pub fn wait_timeout_while<'a, T>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> Result<(MutexGuard<'a, T>, WaitTimeoutResult), AcquireError<MutexGuard<'a, T>>> {
        let deadline = Deadline::after(timeout);
        while condition(&mut guard) {
            if deadline.passed() {
                return Ok((guard, WaitTimeoutResult(true)));
            }
            guard = self.wait_until(guard, &deadline, WaitPolicy::process_default())?.0;
        }
        Ok((guard, WaitTimeoutResult(false)))
    }

    fn wait_until<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: &Deadline,
        policy: WaitPolicy,
    ) -> Result<(MutexGuard<'a, T>, WaitTimeoutResult), AcquireError<MutexGuard<'a, T>>> {
        // Register while still holding the mutex: a notifier that changes the condition
        // under the mutex afterwards must bump the sequence we read here.
        let seq = self.park.prepare();
        let mutex: &'a Mutex<T> = MutexGuard::into_mutex(guard);
        let outcome = self.park.wait(policy, seq, deadline, None);
        self.park.done();
        // The relock honours the deadline too (a passed deadline still takes a free lock).
        let guard = mutex.lock_until(*deadline)?;
        Ok((guard, WaitTimeoutResult(outcome == Wait::TimedOut)))
    }

    /// Wake one waiter.
    pub fn notify_one(&self) {
        self.park.notify(1);
    }

    /// Wake every waiter.
    pub fn notify_all(&self) {
        self.park.notify_all();
    }
}
