//! The one place the futex-based primitives touch atomics and futexes, so that the same
//! algorithms run under [loom](https://docs.rs/loom) with threads standing in for processes.
//!
//! - Normal builds: [`Futex64`] is a `#[repr(transparent)]` `AtomicU64` (all-zero valid,
//!   position independent); [`Futex64::wait`] / [`Futex64::wake`] are shared (not
//!   private) `FUTEX_WAIT` / `FUTEX_WAKE` on one 32-bit half of it.
//! - `--cfg loom`: the atomic is loom's, and a futex is emulated by a loom mutex and
//!   condvar per word: `wait` checks the half *under that mutex* and sleeps until a `wake`
//!   picks it, exactly the kernel's check-then-sleep atomicity, so a lost wake-up shows up
//!   as a loom deadlock. A wait with a finite deadline is modelled as timing out at once
//!   (a deadline may pass at any moment); a wait without one blocks until woken. The
//!   `cap` of periodic rescans (used only to notice dead processes) is ignored, so models
//!   prove the algorithms never rely on it. Limitation: the emulation's mutex adds
//!   happens-before edges from waker to wakee that a real futex does not promise, so the
//!   algorithms must (and do) re-read their state with Acquire after every wake.
//!
//! Every 64-bit word packs the futex half together with the state it depends on (waiter
//! counts, generation, history), so each transition is one atomic read-modify-write on
//! one location: no store-then-load (Dekker) patterns, which loom cannot model under
//! `SeqCst` and which are easy to get wrong.

use std::time::Duration;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::AtomicU64;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::AtomicU64;

use crate::sys::Deadline;

/// Which 32-bit half of a [`Futex64`] a waiter sleeps on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Half {
    /// Bits 0..32.
    Low,
    /// Bits 32..64.
    High,
}

impl Half {
    /// This half of `v`.
    pub(crate) fn of(self, v: u64) -> u32 {
        match self {
            Half::Low => v as u32,
            Half::High => (v >> 32) as u32,
        }
    }
}

/// Outcome of [`Futex64::wait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Woken, the half no longer held the expected value, a signal, a spurious return, or
    /// the rescan cap passed: re-check the condition.
    Woken,
    /// The caller's deadline passed.
    TimedOut,
}

/// A 64-bit atomic whose halves can be futex-waited on.
#[cfg_attr(not(loom), repr(transparent))]
pub(crate) struct Futex64 {
    word: AtomicU64,
    #[cfg(loom)]
    emu: emu::Emu,
}

impl std::ops::Deref for Futex64 {
    type Target = AtomicU64;
    fn deref(&self) -> &AtomicU64 {
        &self.word
    }
}

#[cfg(not(loom))]
impl Futex64 {
    /// A word holding `v`.
    pub(crate) const fn new(v: u64) -> Self {
        Self { word: AtomicU64::new(v) }
    }

    fn half_ptr(&self, half: Half) -> *mut u32 {
        let hi_first = cfg!(target_endian = "big");
        let index = match (half, hi_first) {
            (Half::Low, false) | (Half::High, true) => 0,
            _ => 1,
        };
        self.word.as_ptr().cast::<u32>().wrapping_add(index)
    }

    /// Sleep while `half` holds `expected`, until woken, the deadline passes (then
    /// [`Wait::TimedOut`]) or `cap` passes (then [`Wait::Woken`]).
    pub(crate) fn wait(&self, half: Half, expected: u32, deadline: &Deadline, cap: Option<Duration>) -> Wait {
        // SAFETY: the pointer is 4-aligned and inside `self.word`, which lives as long as
        // `&self`. The `AtomicU32` only names the address for the futex syscall (the kernel
        // reads the word atomically); no 32-bit access is ever made to it from user space,
        // so there are no mixed-size atomic accesses in this program.
        let word = unsafe { std::sync::atomic::AtomicU32::from_ptr(self.half_ptr(half)) };
        match crate::sys::futex::wait(word, expected, *deadline, cap) {
            crate::sys::futex::Wait::TimedOut if deadline.passed() => Wait::TimedOut,
            _ => Wait::Woken,
        }
    }

    /// Wake up to `n` waiters sleeping on `half`.
    pub(crate) fn wake(&self, half: Half, n: u32) {
        // SAFETY: as in `wait`: the address only keys the futex.
        let word = unsafe { std::sync::atomic::AtomicU32::from_ptr(self.half_ptr(half)) };
        crate::sys::futex::wake(word, n);
    }
}

#[cfg(loom)]
impl Futex64 {
    /// A word holding `v`.
    pub(crate) fn new(v: u64) -> Self {
        Self { word: AtomicU64::new(v), emu: emu::Emu::new() }
    }

    /// See the non-loom version.
    pub(crate) fn wait(&self, half: Half, expected: u32, deadline: &Deadline, _cap: Option<Duration>) -> Wait {
        self.emu.wait(&self.word, half, expected, deadline.remaining().is_some())
    }

    /// See the non-loom version.
    pub(crate) fn wake(&self, half: Half, n: u32) {
        self.emu.wake(half, n);
    }
}

#[cfg(loom)]
mod emu {
    use super::{AtomicU64, Half, Wait};
    use loom::sync::atomic::Ordering;
    use loom::sync::{Condvar, Mutex};

    #[derive(Default)]
    struct Queue {
        next: u64,
        sleeping: Vec<(u64, Half)>,
        woken: Vec<u64>,
    }

    /// A futex emulation for one word.
    pub(crate) struct Emu {
        queue: Mutex<Queue>,
        cv: Condvar,
    }

    impl Emu {
        pub(crate) fn new() -> Self {
            Self { queue: Mutex::new(Queue::default()), cv: Condvar::new() }
        }

        pub(crate) fn wait(&self, word: &AtomicU64, half: Half, expected: u32, timed: bool) -> Wait {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if half.of(word.load(Ordering::SeqCst)) != expected {
                return Wait::Woken;
            }
            if timed {
                return Wait::TimedOut;
            }
            let ticket = q.next;
            q.next += 1;
            q.sleeping.push((ticket, half));
            loop {
                q = self.cv.wait(q).unwrap_or_else(|e| e.into_inner());
                if let Some(i) = q.woken.iter().position(|&t| t == ticket) {
                    q.woken.swap_remove(i);
                    return Wait::Woken;
                }
            }
        }

        pub(crate) fn wake(&self, half: Half, n: u32) {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            let mut left = n;
            let mut i = 0;
            while left > 0 && i < q.sleeping.len() {
                if q.sleeping[i].1 == half {
                    let (ticket, _) = q.sleeping.remove(i);
                    q.woken.push(ticket);
                    left -= 1;
                } else {
                    i += 1;
                }
            }
            if left != n {
                self.cv.notify_all();
            }
        }
    }
}
