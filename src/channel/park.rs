//! Spin-then-park waiting on a ring's [`Waiters`] words, and the test hook that stops a
//! process inside an operation.

use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use std::sync::atomic::{AtomicU32, fence};
use std::time::Duration;

use super::ring::{Hook, Point, Waiters};
use crate::sync::WaitPolicy;
use crate::sync::wait::{Cadence, key_of, spin_then};
use crate::sys::{Deadline, futex};

/// A parked thread re-checks at least this often: the other side's death sends no wake-up,
/// so this bounds how long a dead peer's abandoned slot can go unnoticed.
pub(crate) const PARK_CAP: Duration = Duration::from_millis(10);

/// What blocking calls spun for before the adaptive [`WaitPolicy`] (now its initial budget).
#[deprecated(note = "blocking calls wait under a WaitPolicy (adaptive by default); \
                     set_wait_policy(WaitPolicy::Spin(d)) sets a fixed spin")]
pub const DEFAULT_SPIN: Duration = crate::sync::INITIAL_SPIN;

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

/// Run `attempt` until it is done: first spinning as `policy` and `cadence` say (the
/// crate's one mechanism, `sync::wait`), then parked on `w` (futex), re-checking after
/// every wake-up and at least every [`PARK_CAP`]. Before each park but the first, `gone()`
/// may end the wait (a pipe's peer died).
pub(crate) fn wait<R>(
    w: &Waiters,
    (policy, cadence): (WaitPolicy, Cadence),
    deadline: Deadline,
    gone: impl FnMut() -> bool,
    mut attempt: impl FnMut() -> Step<R>,
) -> Result<R, Stop> {
    if let Step::Done(r) = attempt() {
        return Ok(r);
    }
    // The spin and the park look through the same `attempt`, one after the other.
    let attempt = std::cell::RefCell::new(attempt);
    let ready = || match (attempt.borrow_mut())() {
        Step::Done(r) => Some(Ok(r)),
        Step::Retry => None,
    };
    spin_then(policy, cadence, key_of(w), &deadline, ready, || park(w, deadline, gone, &mut *attempt.borrow_mut()))
}

/// The parking half of [`wait`].
fn park<R>(
    w: &Waiters,
    deadline: Deadline,
    mut gone: impl FnMut() -> bool,
    attempt: &mut impl FnMut() -> Step<R>,
) -> Result<R, Stop> {
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

/// The wait-policy knob of a channel handle (a type with a `policy: Option<WaitPolicy>`
/// field, `None` following the process default): `set_wait_policy`, `wait_policy`, and the
/// deprecated `set_spin`.
macro_rules! policy_knob {
    (impl[$($gen:tt)*] $ty:ty) => {
        impl<$($gen)*> $ty {
            /// How blocking calls of this handle wait: spin, then park (see
            /// [`WaitPolicy`](crate::sync::WaitPolicy)). Until set, every call follows
            /// [`WaitPolicy::process_default`](crate::sync::WaitPolicy::process_default)
            /// (adaptive unless changed).
            pub fn set_wait_policy(&mut self, policy: $crate::sync::WaitPolicy) {
                self.policy = Some(policy);
            }

            /// The policy blocking calls of this handle wait under now.
            pub fn wait_policy(&self) -> $crate::sync::WaitPolicy {
                self.policy.unwrap_or_else($crate::sync::WaitPolicy::process_default)
            }

            /// Spin for `spin` before parking: a shortcut to
            /// `set_wait_policy(WaitPolicy::Spin(spin))` (zero parks at once).
            #[deprecated(note = "use set_wait_policy(WaitPolicy::Spin(spin)); the default adapts")]
            pub fn set_spin(&mut self, spin: ::std::time::Duration) {
                self.set_wait_policy($crate::sync::WaitPolicy::Spin(spin));
            }
        }
    };
}
pub(super) use policy_knob;

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
