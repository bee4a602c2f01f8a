//! `Barrier`: n parties meet, like Python's `multiprocessing.Barrier`, with `abort`,
//! `reset` and a broken state reported to every waiter.
//!
//! # Protocol
//!
//! One 64-bit word. High half (the futex word): `generation << 1 | BROKEN`. Low half:
//! `arrived` (bits 0..16) and `history` (bits 16..32): bit `k` of the history tells how
//! generation `current - 1 - k` ended, 1 = all parties met, 0 = `reset` while parties
//! waited.
//!
//! - **wait**: a CAS either counts the caller in (`arrived + 1`) or, for the last party,
//!   opens the barrier: `generation + 1`, `arrived = 0`, history bit 1, then wakes
//!   everybody. A waiter spins as the wait policy says ([`WaitPolicy`]), then sleeps,
//!   while the high half is unchanged, then reads the outcome
//!   of *its* generation from the history (so a waiter that oversleeps a later `reset`
//!   still learns that its own round completed).
//! - **timeout**: the waiter whose deadline passes sets `BROKEN` (CAS; if the round
//!   completed in the meantime it returns success instead) and wakes everybody; it gets
//!   [`LockError::Timeout`], the others [`LockError::Broken`], as do later arrivals.
//! - **abort**: sets `BROKEN`, wakes everybody. **reset**: starts a fresh generation
//!   with history bit 0, so current waiters get `Broken` and the barrier is usable again.
//!
//! # When a process dies
//!
//! A party that dies *before arriving* never arrives: the others wait until the first
//! of them times out, which breaks the barrier for all (every waiter is woken at once and
//! gets `Broken`). Use [`Barrier::with_timeout`] or [`wait_timeout`](Barrier::wait_timeout)
//! whenever processes may die. A party that dies *after arriving* was counted: its
//! round completes normally. The barrier holds no lock, so there is nothing to recover:
//! [`reset`](Barrier::reset) it for the surviving (or replacement) parties.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::LockError;
use super::shim::{Futex64, Half, Wait};
use super::wait::{Cadence, WaitPolicy, key_of, spin_then};
use crate::sys::Deadline;

const BROKEN: u32 = 1;
const GEN_MASK: u32 = 0x7FFF_FFFF;
const ARRIVED_MASK: u32 = 0xFFFF;
const HISTORY: u32 = 16;

fn pack(hi: u32, lo: u32) -> u64 {
    (hi as u64) << 32 | lo as u64
}

fn generation(hi: u32) -> u32 {
    hi >> 1
}

/// The next generation's word after the current one ended with `completed`.
fn next_round(s: u64, completed: bool) -> u64 {
    let (hi, lo) = (Half::High.of(s), Half::Low.of(s));
    let round = (generation(hi) + 1) & GEN_MASK;
    let history = ((lo >> HISTORY) << 1 | completed as u32) & 0xFFFF;
    pack(round << 1, history << HISTORY)
}

/// A reusable barrier for a fixed number of parties (at most 65 535). `#[repr(C)]`,
/// position independent. All-zero bytes are a barrier of 0 parties, which reports
/// [`LockError::Unconfigured`]: store [`Barrier::new`] into it before sharing it.
///
/// ```
/// use std::time::Duration;
/// use shmkit::sync::Barrier;
///
/// let b = Barrier::new(1);
/// assert_eq!(b.wait()?, 0); // one party: opens at once
///
/// let b = Barrier::new(2);
/// assert!(matches!(b.wait_timeout(Duration::from_millis(5)), Err(shmkit::LockError::Timeout)));
/// assert!(b.is_broken());
/// assert!(matches!(b.wait(), Err(shmkit::LockError::Broken)));
/// b.reset();
/// assert!(!b.is_broken());
/// # Ok::<(), shmkit::LockError>(())
/// ```
#[repr(C)]
pub struct Barrier {
    state: Futex64,
    parties: u32,
    _pad: u32,
    default_timeout_ns: u64,
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties)
            .field("waiting", &self.n_waiting())
            .field("broken", &self.is_broken())
            .finish()
    }
}

impl Barrier {
    /// A barrier for `parties` parties; [`wait`](Self::wait) blocks without limit.
    pub fn new(parties: u16) -> Self {
        Self { state: Futex64::new(0), parties: parties as u32, _pad: 0, default_timeout_ns: 0 }
    }

    /// A barrier whose [`wait`](Self::wait) gives up after `timeout` (Python's
    /// `Barrier(parties, timeout=...)`), breaking the barrier.
    pub fn with_timeout(parties: u16, timeout: Duration) -> Self {
        let ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX).max(1);
        Self { default_timeout_ns: ns, ..Self::new(parties) }
    }

    /// Number of parties.
    pub fn parties(&self) -> usize {
        self.parties as usize
    }

    /// Parties that arrived in the current round. After a timeout or [`abort`](Self::abort)
    /// they stay counted until [`reset`](Self::reset).
    pub fn n_waiting(&self) -> usize {
        (Half::Low.of(self.state.load(Ordering::Relaxed)) & ARRIVED_MASK) as usize
    }

    /// Whether the barrier is broken (a wait timed out, or [`abort`](Self::abort) was
    /// called), until [`reset`](Self::reset).
    pub fn is_broken(&self) -> bool {
        Half::High.of(self.state.load(Ordering::Acquire)) & BROKEN != 0
    }

    /// Wait for all parties, using the default timeout if the barrier has one. Returns the
    /// caller's arrival index, `0..parties` (the last to arrive gets `parties - 1`).
    ///
    /// Errors: [`LockError::Broken`] (aborted, reset, or another waiter timed out),
    /// [`LockError::Timeout`] (this wait timed out and broke the barrier),
    /// [`LockError::Unconfigured`] (0 parties).
    pub fn wait(&self) -> Result<usize, LockError> {
        self.wait_with(WaitPolicy::process_default(), None)
    }

    /// Wait for all parties for at most `timeout`; on timeout the barrier breaks.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, LockError> {
        self.wait_until(&Deadline::after(timeout), WaitPolicy::process_default())
    }

    /// Wait for all parties under `policy` (instead of the process default), for at most
    /// `timeout`, or the barrier's default timeout when `None`.
    ///
    /// ```
    /// use shmkit::sync::{Barrier, WaitPolicy};
    /// assert_eq!(Barrier::new(1).wait_with(WaitPolicy::Park, None)?, 0);
    /// # Ok::<(), shmkit::LockError>(())
    /// ```
    pub fn wait_with(&self, policy: WaitPolicy, timeout: Option<Duration>) -> Result<usize, LockError> {
        let deadline = match (timeout, self.default_timeout_ns) {
            (Some(t), _) => Deadline::after(t),
            (None, 0) => Deadline::never(),
            (None, ns) => Deadline::after(Duration::from_nanos(ns)),
        };
        self.wait_until(&deadline, policy)
    }

    fn wait_until(&self, deadline: &Deadline, policy: WaitPolicy) -> Result<usize, LockError> {
        let parties = self.parties;
        if parties == 0 || parties > ARRIVED_MASK {
            return Err(LockError::Unconfigured {
                what: "barrier",
                hint: "it has no valid number of parties; store Barrier::new(parties) into it before sharing it",
            });
        }
        let mut s = self.state.load(Ordering::Acquire);
        let (round, index) = loop {
            let hi = Half::High.of(s);
            if hi & BROKEN != 0 {
                return Err(LockError::Broken);
            }
            let arrived = Half::Low.of(s) & ARRIVED_MASK;
            let (next, last) = if arrived + 1 >= parties { (next_round(s, true), true) } else { (s + 1, false) };
            match self.state.compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) if last => {
                    self.state.wake(Half::High, i32::MAX as u32);
                    return Ok(arrived as usize);
                }
                Ok(_) => break (generation(hi), arrived as usize),
                Err(now) => s = now,
            }
        };
        let ready = || {
            let s = self.state.load(Ordering::Acquire);
            let hi = Half::High.of(s);
            if generation(hi) != round {
                Some(outcome(s, round, index))
            } else if hi & BROKEN != 0 {
                Some(Err(LockError::Broken))
            } else {
                None
            }
        };
        spin_then(policy, Cadence::HandOff, key_of(self), deadline, ready, || self.sleep(round, index, deadline))
    }

    /// Sleep until generation `round` ends, the barrier breaks, or the deadline passes.
    fn sleep(&self, round: u32, index: usize, deadline: &Deadline) -> Result<usize, LockError> {
        loop {
            let s = self.state.load(Ordering::Acquire);
            let hi = Half::High.of(s);
            if generation(hi) != round {
                return outcome(s, round, index);
            }
            if hi & BROKEN != 0 {
                return Err(LockError::Broken);
            }
            if self.state.wait(Half::High, hi, deadline, None) == Wait::TimedOut {
                return self.time_out(round, index);
            }
        }
    }

    /// This waiter's deadline passed: break the barrier, unless the round just completed.
    fn time_out(&self, round: u32, index: usize) -> Result<usize, LockError> {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let hi = Half::High.of(s);
            if generation(hi) != round {
                return outcome(s, round, index);
            }
            if hi & BROKEN != 0 {
                return Err(LockError::Broken);
            }
            let broken = s | (BROKEN as u64) << 32;
            match self.state.compare_exchange_weak(s, broken, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.state.wake(Half::High, i32::MAX as u32);
                    return Err(LockError::Timeout);
                }
                Err(now) => s = now,
            }
        }
    }

    /// Break the barrier: every current and future waiter gets [`LockError::Broken`]
    /// until [`reset`](Self::reset) (Python's `Barrier.abort`).
    pub fn abort(&self) {
        let prev = self.state.fetch_or((BROKEN as u64) << 32, Ordering::AcqRel);
        if Half::High.of(prev) & BROKEN == 0 {
            self.state.wake(Half::High, i32::MAX as u32);
        }
    }

    /// Return to the empty, unbroken state; parties waiting now get
    /// [`LockError::Broken`] (Python's `Barrier.reset`).
    pub fn reset(&self) {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let broken = Half::High.of(s) & BROKEN != 0;
            if !broken && Half::Low.of(s) & ARRIVED_MASK == 0 {
                return;
            }
            match self.state.compare_exchange_weak(s, next_round(s, false), Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.state.wake(Half::High, i32::MAX as u32);
                    return;
                }
                Err(now) => s = now,
            }
        }
    }
}

/// How generation `round` ended, seen from word `s` of a later generation.
fn outcome(s: u64, round: u32, index: usize) -> Result<usize, LockError> {
    let later = generation(Half::High.of(s));
    let back = later.wrapping_sub(round).wrapping_sub(1) & GEN_MASK;
    let history = Half::Low.of(s) >> HISTORY;
    // Beyond 16 generations the record is gone; by then the round had to complete for
    // the others to move on that far, unless resets happened 16 times during one sleep.
    if back < 16 && history >> back & 1 == 0 { Err(LockError::Broken) } else { Ok(index) }
}
