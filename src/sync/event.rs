//! `Event`: a flag that processes wait for, like Python's `multiprocessing.Event`.
//!
//! # Protocol
//!
//! One futex word (the low half of a 64-bit atomic): bit 0 `SET`, bit 1 `SLEEPERS`
//! ("somebody may sleep"), bits 2.. a generation counted up by every `set` that changes
//! the flag.
//!
//! - **set**: one CAS to `(generation + 1) | SET`, which also clears `SLEEPERS`; if that
//!   bit was on, wake everybody.
//! - **clear**: clear `SET` (generation and `SLEEPERS` stay).
//! - **wait**: return at once if `SET`; else spin as the wait policy says ([`WaitPolicy`])
//!   while the word is unchanged; then make sure `SLEEPERS` is on (CAS), and sleep
//!   while the word is unchanged. Return `true` as soon as the generation differs from the
//!   one first seen: like Python, a waiter released by a `set` returns `true` even if a
//!   `clear` came right after (a set–clear pulse is never missed).
//!
//! # When a process dies
//!
//! Nobody owns an event, so death changes nothing: a dead setter simply never sets (use
//! the timed wait), a dead waiter at most leaves `SLEEPERS` on, which costs the next `set`
//! one futex-wake call.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::shim::{Futex64, Half, Wait};
use super::wait::{Cadence, WaitPolicy, key_of, spin_then};
use crate::sys::Deadline;

const SET: u32 = 1;
const SLEEPERS: u32 = 2;
const GEN_ONE: u32 = 4;

/// A settable flag in shared memory that processes can wait for. `#[repr(C)]`, position
/// independent; all-zero bytes are a cleared event.
///
/// ```
/// use std::time::Duration;
/// let ev = shmkit::sync::Event::new();
/// assert!(!ev.wait_timeout(Duration::from_millis(1)));
/// ev.set();
/// assert!(ev.is_set());
/// ev.wait();
/// ev.clear();
/// assert!(!ev.is_set());
/// ```
#[repr(C)]
pub struct Event {
    word: Futex64,
}

default_is_new!(Event);

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event").field("set", &self.is_set()).finish()
    }
}

impl Event {
    /// A cleared event.
    pub fn new() -> Self {
        Self { word: Futex64::new(0) }
    }

    fn load(&self) -> u32 {
        Half::Low.of(self.word.load(Ordering::Acquire))
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.load() & SET != 0
    }

    /// Set the flag and wake every waiter.
    pub fn set(&self) {
        let mut s = self.word.load(Ordering::Relaxed);
        loop {
            let w = Half::Low.of(s);
            // Already set: still write (the same word) with Release, so a waiter that sees
            // the flag also sees what this caller wrote before `set`.
            let next = if w & SET != 0 { w } else { ((w & !(SET | SLEEPERS)).wrapping_add(GEN_ONE)) | SET };
            match self.word.compare_exchange_weak(s, next as u64, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    if w & SET == 0 && w & SLEEPERS != 0 {
                        self.word.wake(Half::Low, i32::MAX as u32);
                    }
                    return;
                }
                Err(now) => s = now,
            }
        }
    }

    /// Clear the flag: later waits block until the next [`set`](Self::set).
    pub fn clear(&self) {
        self.word.fetch_and(!(SET as u64), Ordering::AcqRel);
    }

    /// Wait until the flag is set (spinning first as [`WaitPolicy::process_default`]
    /// says).
    pub fn wait(&self) {
        self.wait_until(&Deadline::never(), WaitPolicy::process_default());
    }

    /// Wait until the flag is set or `timeout` passes; returns whether it was set (as
    /// Python's `Event.wait(timeout)`).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(&Deadline::after(timeout), WaitPolicy::process_default())
    }

    /// Wait under `policy` (instead of the process default) until the flag is set, or at
    /// most `timeout` if given; returns whether it was set.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmkit::sync::{Event, WaitPolicy};
    /// let ev = Event::new();
    /// assert!(!ev.wait_with(WaitPolicy::Park, Some(Duration::from_millis(1))));
    /// ```
    pub fn wait_with(&self, policy: WaitPolicy, timeout: Option<Duration>) -> bool {
        self.wait_until(&Deadline::from_timeout(timeout), policy)
    }

    fn wait_until(&self, deadline: &Deadline, policy: WaitPolicy) -> bool {
        let first = self.load();
        if first & SET != 0 {
            return true;
        }
        let generation = first & !(SET | SLEEPERS);
        let changed = |w: u32| w & !(SET | SLEEPERS) != generation || w & SET != 0;
        let ready = || changed(self.load()).then_some(true);
        spin_then(policy, Cadence::HandOff, key_of(self), deadline, ready, || self.sleep(generation, deadline))
    }

    /// Sleep until the flag is set, the generation differs from `generation`, or the
    /// deadline passes.
    fn sleep(&self, generation: u32, deadline: &Deadline) -> bool {
        loop {
            let s = self.word.load(Ordering::Acquire);
            let w = Half::Low.of(s);
            if w & !(SET | SLEEPERS) != generation || w & SET != 0 {
                return true;
            }
            if w & SLEEPERS == 0 {
                let next = (s & !0xFFFF_FFFF) | (w | SLEEPERS) as u64;
                if self.word.compare_exchange_weak(s, next, Ordering::Relaxed, Ordering::Relaxed).is_err() {
                    continue;
                }
            }
            if self.word.wait(Half::Low, w | SLEEPERS, deadline, None) == Wait::TimedOut {
                return self.is_set() || self.load() & !(SET | SLEEPERS) != generation;
            }
        }
    }
}
