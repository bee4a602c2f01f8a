//! Task timeouts: each item of an entry runs under the entry's `timeout_ms`; a worker whose
//! item runs past it is SIGKILLed by the manager and the item fails with
//! [`PoolError::TaskTimedOut`](super::PoolError::TaskTimedOut).
//!
//! # Protocol (deadline-driven, no periodic tick)
//!
//! - The worker, at the start of each item (`item_begin`), stores the item's index and the
//!   result bytes done so far in its mailbox; if the entry has a timeout it also stores
//!   `item_start_ns` (SeqCst), then loads the header's `mgr_wake_ns` (SeqCst) and rings the
//!   manager's eventfd only if its deadline comes before the time the manager will look
//!   next. In a steady campaign that is almost never: the manager already plans to wake for
//!   an earlier item's deadline.
//! - The manager (`Watch::check`) stores `mgr_wake_ns` = the earliest deadline it knows,
//!   then rescans every mailbox (SeqCst) and sleeps in `ppoll` until that deadline (to the
//!   nanosecond, not rounded up to a millisecond). By the two SeqCst store-then-load pairs,
//!   either the rescan sees a new item's start or the worker sees the manager's plan and
//!   rings: no deadline is missed, and detection follows the deadline by the manager's
//!   wake-up latency.
//! - An overdue worker is SIGKILLed (through its pidfd) and the manager remembers which item
//!   it judged (`Judged`). When the death is reaped, `fail_in_flight` reports that item as
//!   timed out, with how long it ran — unless the worker had already moved on to the next
//!   item in the microseconds between the judgement and the kill: then that innocent item
//!   is marked for running again (`requeue`).
//!
//! Shared words are not trusted: a hostile `item_start_ns` or `timeout_ms` can at worst make
//! the manager kill its own worker early or never, which write access to the pool's memory
//! allows anyway; it cannot make the manager wait past a deadline it computed.

use std::cell::Cell;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::layout::{Header, Mailbox, View};
use crate::process::Child;
use crate::sys::clock::monotonic_ns;
use crate::sys::process as os;

/// The running entry's clock, in a worker (single-threaded).
#[derive(Clone, Copy)]
struct ItemClock {
    mb: *const Mailbox,
    hdr: *const Header,
    limit_ns: u64,
    bell: RawFd,
}

thread_local! {
    static CLOCK: Cell<Option<ItemClock>> = const { Cell::new(None) };
}

/// In a worker, before it runs an entry: items are timed against `limit_ms` (0: no timeout)
/// and reported in `mb`. Ends with [`end_entry`].
pub(crate) fn begin_entry(mb: &Mailbox, hdr: &Header, limit_ms: u32, bell: RawFd) {
    mb.item_limit_ms.store(limit_ms, Ordering::Relaxed);
    let clock = ItemClock { mb, hdr, limit_ns: u64::from(limit_ms) * 1_000_000, bell };
    CLOCK.with(|c| c.set(Some(clock)));
    item_begin(0, 0);
}

/// In a worker, after its entry ran: the current item no longer runs.
pub(crate) fn end_entry(mb: &Mailbox) {
    CLOCK.with(|c| c.set(None));
    mb.item_start_ns.store(0, Ordering::SeqCst);
}

/// In a worker: item `i` of the running entry starts; the items before it wrote `done`
/// result bytes. Called by the trampolines (and for item 0 by the worker itself).
pub(crate) fn item_begin(i: u32, done: usize) {
    let Some(clock) = CLOCK.with(Cell::get) else { return };
    // SAFETY: `begin_entry` stored pointers into the pool's mapping, which this worker keeps
    // mapped until it exits; `end_entry` clears them before the entry's borrow ends.
    let (mb, hdr) = unsafe { (&*clock.mb, &*clock.hdr) };
    mb.item.store(i, Ordering::Relaxed);
    mb.item_bytes.store(done.min(u32::MAX as usize) as u32, Ordering::Relaxed);
    if clock.limit_ns == 0 {
        return;
    }
    let now = monotonic_ns().max(1);
    mb.item_start_ns.store(now, Ordering::SeqCst);
    if now.saturating_add(clock.limit_ns) < hdr.mgr_wake_ns.load(Ordering::SeqCst) {
        os::eventfd_ring(clock.bell);
    }
}

/// The item a timeout kill was aimed at.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Judged {
    item: u32,
    start_ns: u64,
    killed_ns: u64,
}

impl Judged {
    /// Whether the dead worker was still on the judged item (else it had moved on).
    pub fn still_on(&self, mb: &Mailbox) -> bool {
        mb.item.load(Ordering::SeqCst) == self.item && mb.item_start_ns.load(Ordering::SeqCst) == self.start_ns
    }

    /// How long the item ran before it was killed.
    pub fn ran(&self) -> Duration {
        Duration::from_nanos(self.killed_ns.saturating_sub(self.start_ns))
    }
}

/// The manager's side: deadlines of the running items, kills of overdue workers.
pub(crate) struct Watch {
    judged: Vec<Option<Judged>>,
}

/// A running item's deadline in a mailbox, if it has one.
fn deadline(mb: &Mailbox) -> Option<(u64, u64)> {
    let start = mb.item_start_ns.load(Ordering::SeqCst);
    let limit = u64::from(mb.item_limit_ms.load(Ordering::SeqCst));
    (start != 0 && limit != 0).then(|| (start, start.saturating_add(limit * 1_000_000)))
}

impl Watch {
    pub fn new(workers: usize) -> Watch {
        Watch { judged: vec![None; workers] }
    }

    /// Kill every worker whose item is overdue; publish when the manager will look next and
    /// return how long it may sleep (`None`: until rung).
    pub fn check(&mut self, view: &View<'_>, kids: &[Option<Child>]) -> Option<Duration> {
        let now = monotonic_ns();
        let mut earliest = u64::MAX;
        for (w, kid) in kids.iter().enumerate() {
            let (Some(kid), None) = (kid, self.judged[w]) else { continue };
            let mb = view.mailbox(w);
            let Some((start, due)) = deadline(mb) else { continue };
            if due <= now {
                let item = mb.item.load(Ordering::SeqCst);
                self.judged[w] = Some(Judged { item, start_ns: start, killed_ns: now });
                let _ = kid.signal(libc::SIGKILL);
            } else {
                earliest = earliest.min(due);
            }
        }
        let hdr = view.header();
        hdr.mgr_wake_ns.store(earliest, Ordering::SeqCst);
        // Rescan: an item that started before our plan was visible must be in it.
        for (w, kid) in kids.iter().enumerate() {
            if kid.is_some()
                && self.judged[w].is_none()
                && let Some((_, due)) = deadline(view.mailbox(w))
            {
                earliest = earliest.min(due);
            }
        }
        if earliest == u64::MAX {
            return None;
        }
        // `ppoll` keeps nanoseconds: the manager wakes at the deadline, not up to 1 ms after.
        Some(Duration::from_nanos(earliest.saturating_sub(monotonic_ns())))
    }

    /// The judgement on worker `w`, once it is dead (cleared for its replacement).
    pub fn take(&mut self, w: usize) -> Option<Judged> {
        self.judged.get_mut(w).and_then(Option::take)
    }
}
