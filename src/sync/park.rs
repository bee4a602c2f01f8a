//! `ParkWord`: "sleep until something changes" for condition variables and for the
//! rescans of the robust primitives.
//!
//! One 64-bit word: the high half is a sequence number (the futex word), the low half
//! counts registered sleepers. A sleeper registers and reads the sequence in one
//! `fetch_add`; a notifier bumps the sequence and reads the count in one `fetch_add`, and
//! only enters the kernel when somebody sleeps. Both are read-modify-writes of the same
//! location, so one is ordered before the other: either the notifier sees the sleeper
//! (and wakes it), or the sleeper's registration saw the bump (and its futex wait
//! returns at once). The sequence wraps; a sleeper would have to miss exactly 2^32
//! notifications between registering and sleeping to lose one.
//!
//! A process killed while registered leaves the count raised for good. That only costs
//! notifiers a futex-wake system call that finds nobody; correctness is unaffected.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::shim::{Futex64, Half, Wait};
use super::wait::{Cadence, WaitPolicy, key_of, spin_then};
use crate::sys::Deadline;

const SEQ_ONE: u64 = 1 << 32;

/// A sequence number plus a sleeper count, futex-waitable. All-zero is valid.
#[repr(C)]
pub(crate) struct ParkWord {
    word: Futex64,
}

impl ParkWord {
    /// A fresh word.
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Self { word: Futex64::new(0) }
    }

    /// A fresh word.
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Self { word: Futex64::new(0) }
    }

    /// Register as a sleeper; returns the sequence to pass to [`park`](Self::park). Every
    /// `prepare` must be followed by exactly one [`done`](Self::done).
    pub(crate) fn prepare(&self) -> u32 {
        Half::High.of(self.word.fetch_add(1, Ordering::AcqRel))
    }

    /// Sleep while the sequence is still `seq` (see `Futex64::wait`).
    pub(crate) fn park(&self, seq: u32, deadline: &Deadline, cap: Option<Duration>) -> Wait {
        self.word.wait(Half::High, seq, deadline, cap)
    }

    /// Spin as `policy` says while the sequence is still `seq`, then [`park`](Self::park).
    pub(crate) fn wait(&self, policy: WaitPolicy, seq: u32, deadline: &Deadline, cap: Option<Duration>) -> Wait {
        let ready = || (Half::High.of(self.word.load(Ordering::Acquire)) != seq).then_some(Wait::Woken);
        spin_then(policy, Cadence::HandOff, key_of(self), deadline, ready, || self.park(seq, deadline, cap))
    }

    /// Unregister as a sleeper.
    pub(crate) fn done(&self) {
        self.word.fetch_sub(1, Ordering::Relaxed);
    }

    /// Bump the sequence and wake up to `n` sleepers.
    pub(crate) fn notify(&self, n: u32) {
        let before = self.word.fetch_add(SEQ_ONE, Ordering::AcqRel);
        if Half::Low.of(before) != 0 {
            self.word.wake(Half::High, n);
        }
    }

    /// Bump the sequence and wake every sleeper.
    pub(crate) fn notify_all(&self) {
        self.notify(i32::MAX as u32);
    }
}
