//! The bounded MPMC ring: per-slot stamps after Vyukov and crossbeam's `ArrayQueue`, plus
//! a robust per-slot lock so that a process killed inside an operation is detected and its
//! slot recovered. The slot-state table is in the [module docs](super).
//!
//! Everything here works on shared words only: positions (`head`, `tail`), stamps and slot
//! locks. Payload bytes are moved by the caller's closure while this code holds the slot
//! lock and the slot is claimed. Under `--cfg loom` the atomics are loom's and the slot
//! lock is a model of a robust mutex, so `tests/loom_queue.rs` checks this very code.

#![cfg_attr(loom, allow(dead_code))] // the shared-memory users of the ring are not built under loom

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64};

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

/// Bit of `tail` that marks the ring closed: producers' claims (a CAS on `tail`) fail
/// from then on, atomically with the position consumers compare against.
pub(crate) const CLOSED: u64 = 1 << 63;
/// Positions stay below this (stamps are `2 * position (+1)`), i.e. 4.6e18 messages.
pub(crate) const MAX_POS: u64 = 1 << 62;
/// How often an attempt re-reads a slot a peer holds before it reports the slot busy.
#[cfg(not(loom))]
const BUSY_SPINS: u32 = 64;
#[cfg(loom)]
const BUSY_SPINS: u32 = 1;
/// Re-reads of an inconsistent (stale) snapshot before it is reported as corrupt. A stale
/// snapshot is fixed by one re-read once the racing operation has moved on, so any larger
/// count means the words are corrupt.
#[cfg(not(loom))]
const STALE_RETRIES: u32 = 1 << 10;
#[cfg(loom)]
const STALE_RETRIES: u32 = 8;

#[cfg(loom)]
use loom::hint::spin_loop;
#[cfg(not(loom))]
use std::hint::spin_loop;

/// Stamp of a slot that waits for the message of position `p`.
#[inline]
pub(crate) const fn free(p: u64) -> u64 {
    p << 1
}

/// Stamp of a slot that holds the message of position `p`.
#[inline]
pub(crate) const fn full(p: u64) -> u64 {
    (p << 1) | 1
}

/// A cache line of its own, so producers and consumers do not slow each other down.
#[repr(C, align(64))]
pub(crate) struct Line<T>(pub(crate) T);

/// A futex word and the number of threads parked on it (anywhere, in any process).
#[repr(C)]
pub(crate) struct Waiters {
    /// Bumped (then woken) by the other side when it made progress and `count != 0`.
    pub(crate) seq: AtomicU32,
    /// Registrations since the last wake-up (waiters add themselves before they park; the
    /// notifier resets it to 0 and wakes them all).
    pub(crate) count: AtomicU32,
}

/// Fixed facts about a ring, written before the segment is published.
#[repr(C)]
pub(crate) struct RingInfo {
    /// [`RING_FORMAT`](super::layout::RING_FORMAT).
    pub(crate) format: AtomicU32,
    /// Reserved, 0.
    pub(crate) flags: AtomicU32,
    /// Number of slots.
    pub(crate) capacity: AtomicU64,
    /// Bytes between the starts of two slots' data.
    pub(crate) stride: AtomicU64,
    /// Largest message in bytes (fixed-size queues: the element size).
    pub(crate) max_msg: AtomicU64,
    /// Offset of slot 0's data in the segment payload.
    pub(crate) data_offset: AtomicU64,
    /// Messages lost because their writer or reader died inside an operation.
    pub(crate) abandoned: AtomicU64,
    /// FNV-1a of the fixed words above (all but `abandoned`), written with them: a field a
    /// peer overwrote fails it at open.
    pub(crate) check: AtomicU64,
}

/// The shared words of one ring, `#[repr(C)]`, valid for any bit pattern.
#[repr(C)]
pub(crate) struct RingHeader {
    pub(crate) info: Line<RingInfo>,
    /// Next position to consume.
    pub(crate) head: Line<AtomicU64>,
    /// Next position to produce, with the [`CLOSED`] bit.
    pub(crate) tail: Line<AtomicU64>,
    /// Consumers parked until a message is published.
    pub(crate) consumers: Line<Waiters>,
    /// Producers parked until a slot is freed.
    pub(crate) producers: Line<Waiters>,
}

/// One slot's stamp and its liveness lock.
#[repr(C, align(64))]
pub(crate) struct SlotMeta<L> {
    pub(crate) stamp: AtomicU64,
    pub(crate) lock: L,
}

/// Outcome of trying a slot lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lock {
    /// Held now by this thread (a dead previous owner has been forgiven: every step of the
    /// protocol leaves the shared words consistent, and the caller re-reads them).
    Acquired,
    /// A live thread holds it.
    Busy,
    /// The lock word is unusable (corrupt bytes).
    Broken,
}

/// A lock whose holder's death is visible to the next locker (robust pthread mutex in
/// shared memory; a model of one under loom).
pub(crate) trait SlotLock {
    /// Take the lock if it is free or its holder died.
    fn try_acquire(&self) -> Lock;
    /// Release it.
    ///
    /// # Safety
    ///
    /// The calling thread holds the lock (a successful `try_acquire`).
    unsafe fn release(&self);
}

/// Where a process may be stopped inside an operation (test hooks, loom's dying threads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Point {
    /// A producer holds the slot lock and has not claimed the position yet.
    PutLocked = 1,
    /// A producer claimed its position and has not written the message.
    PutClaimed = 2,
    /// A producer wrote the message and has not published it.
    PutWritten = 3,
    /// A consumer holds the slot lock and has not claimed the position yet.
    GetLocked = 4,
    /// A consumer claimed its position and has not read the message.
    GetClaimed = 5,
    /// A consumer read the message and has not released the slot.
    GetRead = 6,
}

/// Called at each [`Point`]; returning `true` makes the operation stop right there,
/// leaving the slot lock held, as if the thread had died (loom models only).
pub(crate) trait Hook {
    fn reach(&self, point: Point) -> bool;
}

/// Why a non-blocking put did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PutFail {
    /// Every slot holds an unconsumed message.
    Full,
    /// The next slot is still being read by a live consumer.
    Busy,
    /// The ring is closed.
    Closed,
    /// The shared words contradict each other.
    Corrupt(&'static str),
    /// The hook stopped the operation.
    Died,
}

/// Why a non-blocking get did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GetFail {
    /// No message is claimed or published.
    Empty,
    /// The next message is being written (or taken) by a live peer.
    Pending,
    /// The ring is closed and drained.
    Closed,
    /// The shared words contradict each other.
    Corrupt(&'static str),
    /// The hook stopped the operation.
    Died,
}

/// A view of one ring: its shared header and slots, and the capacity validated at attach
/// time (never re-read from shared memory, so every slot index is in bounds).
pub(crate) struct Ring<'a, L, H> {
    pub(crate) hdr: &'a RingHeader,
    pub(crate) slots: &'a [SlotMeta<L>],
    pub(crate) hook: H,
}

/// Releases a slot lock on every path out of an operation.
struct Held<'a, L: SlotLock>(&'a L);

impl<L: SlotLock> Drop for Held<'_, L> {
    fn drop(&mut self) {
        // SAFETY: `Held` is built only right after a successful `try_acquire` on this thread.
        unsafe { self.0.release() }
    }
}

/// What [`Ring::claim`] found at a position.
enum Claim<'a, L: SlotLock> {
    /// The position is ours, its slot locked by this thread.
    Held(Held<'a, L>),
    /// Another peer won the position, or holds its slot for now: re-read and try again.
    Retry,
    /// The slot is not stamped ready for the position: its slot and the stamp read.
    NotReady(&'a SlotMeta<L>, u64),
}

/// Why a claim of a ready slot stopped the operation.
enum Stop {
    /// A live peer has held the slot for too many tries.
    Busy,
    /// The slot lock is unusable.
    Corrupt(&'static str),
    /// The hook stopped the operation.
    Died,
}

impl From<Stop> for PutFail {
    fn from(s: Stop) -> Self {
        match s {
            Stop::Busy => PutFail::Busy,
            Stop::Corrupt(why) => PutFail::Corrupt(why),
            Stop::Died => PutFail::Died,
        }
    }
}

impl From<Stop> for GetFail {
    fn from(s: Stop) -> Self {
        match s {
            Stop::Busy => GetFail::Pending,
            Stop::Corrupt(why) => GetFail::Corrupt(why),
            Stop::Died => GetFail::Died,
        }
    }
}

fn acquire<L: SlotLock>(lock: &L) -> Result<Option<Held<'_, L>>, &'static str> {
    match lock.try_acquire() {
        Lock::Acquired => Ok(Some(Held(lock))),
        Lock::Busy => Ok(None),
        Lock::Broken => Err("a slot lock is unusable"),
    }
}

impl<'a, L: SlotLock, H: Hook> Ring<'a, L, H> {
    #[inline]
    fn cap(&self) -> u64 {
        self.slots.len() as u64
    }

    #[inline]
    fn slot(&self, pos: u64) -> &'a SlotMeta<L> {
        &self.slots[self.index(pos)]
    }

    #[inline]
    fn index(&self, pos: u64) -> usize {
        let cap = self.cap();
        (if cap.is_power_of_two() { pos & (cap - 1) } else { pos % cap }) as usize
    }

    /// Messages claimed by producers and not yet claimed by consumers (at most capacity).
    pub(crate) fn len(&self) -> usize {
        let tail = self.hdr.tail.0.load(Acquire) & !CLOSED;
        let head = self.hdr.head.0.load(Acquire);
        tail.saturating_sub(head).min(self.cap()) as usize
    }

    /// Whether the ring is closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.hdr.tail.0.load(Acquire) & CLOSED != 0
    }

    /// Close: later claims by producers fail; consumers drain, then see `Closed`.
    /// Returns whether this call closed it.
    pub(crate) fn close(&self) -> bool {
        self.hdr.tail.0.fetch_or(CLOSED, SeqCst) & CLOSED == 0
    }

    /// Messages lost to processes that died inside an operation.
    pub(crate) fn abandoned(&self) -> u64 {
        self.hdr.info.0.abandoned.load(Relaxed)
    }

    /// The fast path of both sides, part one: if the slot of `pos` is stamped `ready`, lock
    /// it and claim `pos` by moving `word` (the tail or the head) past it while the stamp is
    /// still `ready`. `steps` are the hook's points after locking and after claiming; `busy`
    /// counts this call's tries on a slot a peer holds.
    fn claim(
        &self,
        word: &AtomicU64,
        pos: u64,
        ready: u64,
        steps: [Point; 2],
        busy: &mut u32,
    ) -> Result<Claim<'a, L>, Stop> {
        let slot = self.slot(pos);
        let stamp = slot.stamp.load(Acquire);
        if stamp != ready {
            return Ok(Claim::NotReady(slot, stamp));
        }
        let Some(held) = acquire(&slot.lock).map_err(Stop::Corrupt)? else {
            *busy += 1;
            if *busy > BUSY_SPINS {
                return Err(Stop::Busy);
            }
            spin_loop();
            return Ok(Claim::Retry);
        };
        if self.hook.reach(steps[0]) {
            std::mem::forget(held);
            return Err(Stop::Died);
        }
        if slot.stamp.load(Acquire) != ready || word.compare_exchange(pos, pos + 1, SeqCst, Relaxed).is_err() {
            return Ok(Claim::Retry); // another peer won position `pos`; `held` unlocks
        }
        if self.hook.reach(steps[1]) {
            std::mem::forget(held);
            return Err(Stop::Died);
        }
        Ok(Claim::Held(held))
    }

    /// Part two, on the slot of `pos` claimed by [`claim`](Self::claim): move the data with
    /// `f`, then stamp the slot `done` and wake the other side's `waiters`. `None`: the
    /// hook stopped the operation at `moved`.
    fn finish<R>(
        &self,
        held: Held<'a, L>,
        pos: u64,
        done: u64,
        moved: Point,
        waiters: &Waiters,
        f: impl FnOnce(usize) -> R,
    ) -> Option<R> {
        let r = f(self.index(pos));
        if self.hook.reach(moved) {
            std::mem::forget(held);
            return None;
        }
        // SeqCst RMW: pairs with the waiter's SeqCst fence (see `notify`).
        self.slot(pos).stamp.swap(done, SeqCst);
        drop(held);
        notify(waiters);
        Some(r)
    }

    /// Try once to put a message; `write(i)` fills slot `i`'s data while the slot is ours.
    pub(crate) fn try_put(&self, write: impl FnOnce(usize)) -> Result<(), PutFail> {
        let mut busy = 0u32;
        let mut stale = 0u32;
        loop {
            let tail = self.hdr.tail.0.load(Acquire);
            if tail & CLOSED != 0 {
                return Err(PutFail::Closed);
            }
            if tail >= MAX_POS {
                return Err(PutFail::Corrupt("the tail position is out of range"));
            }
            let steps = [Point::PutLocked, Point::PutClaimed];
            let (slot, stamp) = match self.claim(&self.hdr.tail.0, tail, free(tail), steps, &mut busy)? {
                Claim::Held(held) => {
                    let done = self.finish(held, tail, full(tail), Point::PutWritten, &self.hdr.consumers.0, write);
                    return done.ok_or(PutFail::Died);
                }
                // Another producer won position `tail`, or holds its slot for now.
                Claim::Retry => continue,
                Claim::NotReady(slot, stamp) => (slot, stamp),
            };
            // Compare with a fresh `tail`: equal means `stamp` was read while the tail was
            // `tail` (it only grows), so it belongs to position `tail - cap` or is corrupt.
            if self.hdr.tail.0.load(Acquire) != tail {
                continue;
            }
            match tail.checked_sub(self.cap()) {
                Some(prev) if stamp == free(prev) || stamp == full(prev) => {
                    if self.hdr.head.0.load(Acquire) <= prev {
                        return Err(PutFail::Full);
                    }
                    // A consumer claimed `prev` and has not released the slot yet.
                    let Some(held) = acquire(&slot.lock).map_err(PutFail::Corrupt)? else {
                        return Err(PutFail::Busy);
                    };
                    // While we hold slot(tail), neither `tail` (claimed only under this lock)
                    // nor a consumer of `prev` can move.
                    if self.hdr.tail.0.load(Acquire) != tail {
                        continue;
                    }
                    let head = self.hdr.head.0.load(Acquire);
                    if head > tail {
                        return Err(PutFail::Corrupt("the head position is past the tail"));
                    }
                    let now = slot.stamp.load(Acquire);
                    if (now == free(prev) || now == full(prev)) && head > prev {
                        // Its consumer died between claiming and releasing: the message
                        // of `prev` went with it. Free the slot for `tail`.
                        slot.stamp.store(free(tail), Release);
                        self.hdr.info.0.abandoned.fetch_add(1, Relaxed);
                    }
                    drop(held);
                }
                _ => {
                    stale += 1;
                    if stale > STALE_RETRIES {
                        return Err(PutFail::Corrupt("a slot stamp does not match the tail position"));
                    }
                    spin_loop();
                }
            }
        }
    }

    /// Try once to get a message; `read(i)` copies slot `i`'s data while the slot is ours.
    pub(crate) fn try_get<R>(&self, read: impl FnOnce(usize) -> R) -> Result<R, GetFail> {
        let mut busy = 0u32;
        let mut stale = 0u32;
        loop {
            let head = self.hdr.head.0.load(Acquire);
            if head >= MAX_POS {
                return Err(GetFail::Corrupt("the head position is out of range"));
            }
            let (slot, stamp) = match self.claim(
                &self.hdr.head.0,
                head,
                full(head),
                [Point::GetLocked, Point::GetClaimed],
                &mut busy,
            )? {
                Claim::Held(held) => {
                    let next = free(head + self.cap());
                    let done = self.finish(held, head, next, Point::GetRead, &self.hdr.producers.0, read);
                    return done.ok_or(GetFail::Died);
                }
                Claim::Retry => continue,
                Claim::NotReady(slot, stamp) => (slot, stamp),
            };
            if self.hdr.head.0.load(Acquire) != head {
                continue;
            }
            let tail = self.hdr.tail.0.load(Acquire);
            if (tail & !CLOSED) <= head {
                return Err(if tail & CLOSED != 0 { GetFail::Closed } else { GetFail::Empty });
            }
            if stamp != free(head) {
                // The previous lap's consumer has not released the slot, yet the position
                // is claimed: a stale read (retry) or corrupt words.
                stale += 1;
                if stale > STALE_RETRIES {
                    return Err(GetFail::Corrupt("a slot stamp does not match the head position"));
                }
                spin_loop();
                continue;
            }
            // Position `head` is claimed by a producer and not yet published.
            let Some(held) = acquire(&slot.lock).map_err(GetFail::Corrupt)? else {
                return Err(GetFail::Pending); // the producer is alive, writing
            };
            // While we hold slot(head), `head` cannot move (claimed only under this lock),
            // and producers cannot be more than a lap ahead of it.
            let tail = self.hdr.tail.0.load(Acquire) & !CLOSED;
            if self.hdr.head.0.load(Acquire) == head && tail > head + self.cap() {
                return Err(GetFail::Corrupt("the tail position is more than a lap past the head"));
            }
            if slot.stamp.load(Acquire) == free(head) && self.hdr.head.0.load(Acquire) == head && tail > head {
                // Claimed, unpublished, and nobody holds the slot: its producer died after
                // claiming. Skip the position.
                if self.hdr.head.0.compare_exchange(head, head + 1, SeqCst, Relaxed).is_ok() {
                    slot.stamp.swap(free(head + self.cap()), SeqCst);
                    self.hdr.info.0.abandoned.fetch_add(1, Relaxed);
                    drop(held);
                    notify(&self.hdr.producers.0);
                    continue;
                }
            }
            drop(held);
        }
    }
}

/// Tell parked threads of the other side that something changed (only when there are any:
/// the uncontended path makes no system call).
///
/// Called right after a SeqCst read-modify-write of a stamp. A waiter increments `count`
/// (SeqCst), issues a SeqCst fence, then re-reads the stamps: in the single total order of
/// SeqCst operations either our stamp RMW comes first (the waiter's re-read sees it) or its
/// increment does (our SeqCst load of `count` sees it and we wake it).
///
/// The notifier takes every registration it sees (`count` back to 0) and wakes all of
/// them at once: one system call per batch of waiters instead of one per message until the
/// woken thread runs. Waiters that still cannot proceed register again.
#[inline]
pub(crate) fn notify(w: &Waiters) {
    if w.count.load(SeqCst) != 0 && w.count.swap(0, SeqCst) != 0 {
        w.seq.fetch_add(1, Release);
        wake(&w.seq);
    }
}

#[cfg(not(loom))]
fn wake(word: &AtomicU32) {
    crate::sys::futex::wake_all(word);
}

#[cfg(loom)]
fn wake(_word: &AtomicU32) {}
