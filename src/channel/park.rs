//! Spin-then-park waiting on a ring's [`Waiters`] words, and the test hook that stops a
//! process inside an operation.

use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use std::sync::atomic::{AtomicU32, fence};
use std::time::{Duration, Instant};

use super::ring::{Hook, Point, Waiters};
use crate::sys::{Deadline, futex};

/// A parked thread re-checks at least this often: the other side's death sends no wake-up,
/// so this bounds how long a dead peer's abandoned slot can go unnoticed.
pub(crate) const PARK_CAP: Duration = Duration::from_millis(10);

/// Within the spin phase, how long to spin without yielding the CPU.
const PURE_SPIN: Duration = Duration::from_micros(2);

/// Default time a blocking call spins before it parks.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(20);

/// One non-blocking attempt: finished (with a result or an error), or come back later.
pub(crate) enum Step<R> {
    Done(R),
    Retry,
}

/// Why [`wait`] stopped without a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The deadline passed.
    Timeout,
    /// `gone` said the peer is gone.
    Gone,
}

/// Run `attempt` until it is done: first spinning for `spin`, then parked on `w` (futex),
/// re-checking after every wake-up and at least every [`PARK_CAP`]. Before each park,
/// `gone()` may end the wait (a pipe's peer died).
pub(crate) fn wait<R>(
    w: &Waiters,
    spin: Duration,
    deadline: Deadline,
    mut gone: impl FnMut() -> bool,
    mut attempt: impl FnMut() -> Step<R>,
) -> Result<R, Stop> {
    if let Step::Done(r) = attempt() {
        return Ok(r);
    }
    if !spin.is_zero() {
        let start = Instant::now();
        loop {
            // Busy-spin for the first couple of microseconds; after that yield the CPU
            // between looks, so a peer waiting for a core (more runnable threads than
            // cores) gets it instead of being starved by our spinning.
            let spent = start.elapsed();
            if spent < PURE_SPIN {
                for _ in 0..32 {
                    std::hint::spin_loop();
                }
            } else {
                std::thread::yield_now();
            }
            if let Step::Done(r) = attempt() {
                return Ok(r);
            }
            if spent >= spin || deadline.passed() {
                break;
            }
        }
    }
    // The first park skips `gone()` (a system call for pipes): a peer that hangs up wakes
    // us, and one that dies is noticed after the first PARK_CAP.
    let mut parked = false;
    loop {
        let seq = w.seq.load(Acquire);
        w.count.fetch_add(1, SeqCst);
        // Pairs with the SeqCst stamp RMW before `ring::notify` (store-then-load on both sides).
        fence(SeqCst);
        if let Step::Done(r) = attempt() {
            return Ok(r);
        }
        if deadline.passed() {
            return Err(Stop::Timeout);
        }
        if parked && gone() {
            // One last look: the peer may have sent before it went.
            return match attempt() {
                Step::Done(r) => Ok(r),
                Step::Retry => Err(Stop::Gone),
            };
        }
        parked = true;
        futex::wait(&w.seq, seq, deadline, Some(PARK_CAP));
        // Woken (most likely by the notifier, which took our registration): look before
        // registering again.
        if let Step::Done(r) = attempt() {
            return Ok(r);
        }
    }
}

/// Wake every parked thread of `w` (after close, or a peer's hang-up).
pub(crate) fn wake_all(w: &Waiters) {
    w.seq.fetch_add(1, SeqCst);
    futex::wake_all(&w.seq);
}

static PAUSE_AT: AtomicU32 = AtomicU32::new(0);

/// Test hook (reached through `crate::testing::pause_at`): make every later queue operation
/// of *this process* stop itself with `SIGSTOP` when it reaches `point` (`None`: never, the
/// default), so that a test can `SIGKILL` it mid-operation. The cost when unset is one
/// relaxed load per point.
pub(crate) fn pause_at(point: Option<Point>) {
    PAUSE_AT.store(point.map_or(0, |p| p as u32), SeqCst);
}

/// The hook real queues run: stop at the configured point (see [`pause_at`]).
#[derive(Clone, Copy, Default)]
pub(crate) struct ProcessHook;

impl Hook for ProcessHook {
    #[inline]
    fn reach(&self, point: Point) -> bool {
        if PAUSE_AT.load(Relaxed) == point as u32 {
            crate::sys::process::stop_self_forever();
        }
        false
    }
}
