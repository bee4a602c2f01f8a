//! Range claims: a robust reader/writer lock over index ranges of a shared payload.
//!
//! # Protocol
//!
//! The control block holds a table of `capacity` slots behind one robust mutex (the
//! *table lock*). A live claim is a slot with `mode != FREE`, a half-open element range
//! `[start, end)`, and its *owner mutex* held by the claiming thread for as long as the
//! claim lives. Every mutex is a [`LazyRawMutex`]: valid as zero bytes (a table written
//! by Python is usable as it is), initialised on first use by one process, taken over
//! only when that process has ended, and recording its owner's pid.
//!
//! - **Claim** (under the table lock, taken with the caller's deadline): for each live
//!   slot that overlaps and is not compatible (`Shared`+`Shared` and `Atomic`+`Atomic`
//!   are; anything with `Exclusive` is not), `try_lock` its owner: busy → conflict;
//!   owner-died (its process ended) or free → the claim is abandoned: clear it;
//!   abandoned by a *thread* of a process that lives → [`ClaimError::Abandoned`] while it
//!   lives (a leaked guard may still borrow the range; timed claims wait for it to end). Without conflict: take a free slot by
//!   locking its owner mutex, write `start`/`end`, then `mode` (Release). A slot still
//!   marked counts as free once the process of its claim has ended (its owner mutex is
//!   not held and the owner's process is gone; the try-lock confirms it with
//!   owner-died): claims that conflict with nothing (compatible or disjoint) are never
//!   met by the scan above, and their dead holders' slots would otherwise fill the table. With a conflict:
//!   give up (`try_*`), or drop the table lock, spin as the wait policy says
//!   ([`WaitPolicy`](crate::sync::WaitPolicy)) and futex-wait on `generation` (at most
//!   10 ms at a time, so a dead holder is noticed on the next scan), then rescan.
//! - **Release** (no table lock needed, so a peer stopped inside the table lock cannot
//!   block a drop): only if this process holds the owner mutex (a guard dropped in a
//!   forked child does nothing), `mode = FREE`, *then* unlock the owner mutex (so no
//!   scanner can take the slot while its mode is still being cleared), bump `generation`,
//!   and wake waiters if any.
//!
//! Every step leaves the table consistent, so a process killed anywhere inside either
//! path leaves nothing to repair: the next table-lock holder sees owner-died on the table
//! lock and simply marks it consistent. Slot fields come from shared memory and are
//! validated on every scan; a corrupt range is treated as covering everything.

use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::sync::WaitPolicy;
use crate::sync::wait::{Cadence, key_of, spin_then};
use crate::sync::{Acquired, LazyRawMutex, LockError};
use crate::sys::{Deadline, futex};

/// How a claim may share its range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Mode {
    /// Read-only `&[T]`: compatible with other shared claims.
    Shared = 1,
    /// `&mut [T]`: compatible with nothing.
    Exclusive = 2,
    /// `&[AtomicX]`: compatible with other atomic claims.
    Atomic = 3,
}

const FREE: u32 = 0;

impl Mode {
    fn compatible(self, other: u32) -> bool {
        (self == Mode::Shared && other == Mode::Shared as u32) || (self == Mode::Atomic && other == Mode::Atomic as u32)
    }
}

/// Most claim slots an array may be created with (each claim scans the whole table, and
/// the table lives in the segment's control block): enough for every thread of a large
/// machine, small enough that the table's size can never overflow. Larger counts are
/// refused with [`SegmentError::TooLarge`](crate::SegmentError::TooLarge).
pub const MAX_CLAIM_SLOTS: usize = 1 << 16;

/// How long a `try_*` claim waits for the table lock (held by another claimant for a
/// few hundred nanoseconds normally) before reporting [`ClaimError::TableBusy`].
const TRY_TABLE_WAIT: Duration = Duration::from_millis(10);

/// Why a claim was not granted.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// The range is out of bounds.
    #[error("range {start}..{end} is out of bounds for a shared array of {len} elements")]
    OutOfBounds {
        /// Requested start.
        start: usize,
        /// Requested end.
        end: usize,
        /// Array length.
        len: usize,
    },
    /// A `try_*` call found an overlapping, incompatible live claim.
    #[error(
        "range {start}..{end} overlaps a live claim of process {holder} (a thread of it holds the claim); \
         wait, or claim another range"
    )]
    Conflict {
        /// Requested start.
        start: usize,
        /// Requested end.
        end: usize,
        /// Pid of a process holding an overlapping claim (0 if unknown).
        holder: u32,
    },
    /// The calling thread itself holds an overlapping, incompatible claim.
    #[error("this thread already holds an overlapping claim on {start}..{end}; waiting would deadlock")]
    WouldDeadlock {
        /// Requested start.
        start: usize,
        /// Requested end.
        end: usize,
    },
    /// The timeout passed while an overlapping claim stayed live.
    #[error(
        "timed out waiting for range {start}..{end}: process {holder} holds an overlapping claim \
         (it may be stopped or slow)"
    )]
    Timeout {
        /// Requested start.
        start: usize,
        /// Requested end.
        end: usize,
        /// Pid of a process holding an overlapping claim (0 if unknown).
        holder: u32,
    },
    /// The claim table's lock stayed held by another process until the deadline (for a
    /// `try_*` call: for a few milliseconds), which is stopped or very slow.
    #[error(
        "the claim table is locked by process {holder}, which has not released it by the deadline \
         (it may be stopped, e.g. by SIGSTOP or a debugger); retry later, or resume or kill it"
    )]
    TableBusy {
        /// Pid of the process holding the table lock (0 if unknown).
        holder: u32,
    },
    /// An overlapping claim was held by a thread that exited while its process lives on
    /// (a guard leaked with `mem::forget` or `Box::leak`). Its borrow may still be alive,
    /// so the range is not granted while that process lives (for ever, if it is this one).
    #[error(
        "range {start}..{end} overlaps a claim abandoned by an exited thread of live process {pid} \
         (a leaked guard outlives its thread); the range cannot be granted again while that process \
         lives: drop claims on the thread that took them"
    )]
    Abandoned {
        /// Requested start.
        start: usize,
        /// Requested end.
        end: usize,
        /// The process whose thread abandoned the claim.
        pid: u32,
    },
    /// Every slot of the claim table is in use.
    #[error("all {capacity} claim slots are in use: release claims, or create the array with more slots")]
    TableFull {
        /// Slots in the table.
        capacity: usize,
    },
    /// A view with a fixed number of dimensions was asked of a claim of another shape
    /// (`view_as::<Ix2>()` of a flat claim: claim whole rows to get the array's shape).
    #[error(
        "the claim has shape {shape:?}, which is not {wanted}-dimensional: claim whole rows \
         (`Rows(r0..r1)`) for the array's shape, or ask for its dimensionality"
    )]
    Dimensions {
        /// The claim's shape.
        shape: Vec<usize>,
        /// The number of dimensions asked for.
        wanted: usize,
    },
    /// The claim table in shared memory is corrupt.
    #[error("the shared claim table is corrupt ({reason}); recreate the array")]
    Corrupt {
        /// What is wrong.
        reason: String,
    },
    /// The table lock failed.
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// One claim slot, in shared memory.
#[repr(C)]
pub(crate) struct Slot {
    owner: LazyRawMutex,
    mode: AtomicU32,
    _pad: u32,
    start: AtomicU64,
    end: AtomicU64,
}

/// The claim table header; `capacity` slots follow it.
///
/// Layout (offsets from the start of the control block, which other languages rely on):
/// `0 reserved: u32`, `4 generation: u32`, `8 waiters: u32`, `12 pad`, `16 capacity: u64`,
/// `24 elems: u64`, `32 lock: LazyRawMutex`, then the slots. All zero bytes except
/// `capacity` and `elems` is a valid, empty table.
#[repr(C)]
pub(crate) struct Table {
    _reserved: AtomicU32,
    generation: AtomicU32,
    waiters: AtomicU32,
    _pad: u32,
    capacity: AtomicU64,
    elems: AtomicU64,
    lock: LazyRawMutex,
}

const RESCAN: Duration = Duration::from_millis(10);

/// Test hook (see `crate::testing`): the next claim of this process stops it for ever
/// while it holds the table lock.
pub(crate) static STOP_IN_TABLE_LOCK: AtomicBool = AtomicBool::new(false);

/// Bytes of control block a table of `capacity` slots needs (saturating: a size that does
/// not fit in `usize` can never be created).
pub(crate) const fn control_len(capacity: usize) -> usize {
    capacity.saturating_mul(std::mem::size_of::<Slot>()).saturating_add(std::mem::size_of::<Table>())
}

/// A claim table living in a segment's control block.
#[derive(Clone, Copy)]
pub(crate) struct Claims<'a> {
    table: &'a Table,
    slots: &'a [Slot],
}

impl<'a> Claims<'a> {
    /// Initialise a table at `ptr` for `elems` elements: the memory is zero-filled (a fresh
    /// segment), which makes every lock and slot valid and free; only the shape is written.
    ///
    /// # Safety
    ///
    /// `ptr` must be valid for writes of `control_len(capacity)` bytes, aligned for
    /// `Table`, zero-filled, and not yet visible to any other thread or process.
    pub(crate) unsafe fn init(ptr: *mut u8, capacity: usize, elems: u64) -> Result<(), String> {
        if capacity == 0 || capacity > MAX_CLAIM_SLOTS {
            return Err(format!("a claim table needs 1 to {MAX_CLAIM_SLOTS} slots, not {capacity}"));
        }
        let table = ptr.cast::<Table>();
        // SAFETY: per the contract, the region is ours alone and large enough for the
        // table; zero bytes are a valid value for every field.
        unsafe {
            (*table).capacity.store(capacity as u64, Ordering::Relaxed);
            (*table).elems.store(elems, Ordering::Relaxed);
        }
        Ok(())
    }

    /// View the table at `ptr`, checking its recorded shape against what the segment allows.
    /// Never waits: the locks initialise themselves on first use.
    ///
    /// # Safety
    ///
    /// `ptr` must point to the control block of a published segment whose mapping
    /// outlives `'a`, aligned for `Table`, with `avail` bytes of control block.
    pub(crate) unsafe fn attach(ptr: *mut u8, avail: usize, elems: u64) -> Result<Claims<'a>, String> {
        if avail < std::mem::size_of::<Table>() {
            return Err("control block too small for a claim table".into());
        }
        // SAFETY: in bounds (checked above), aligned (per the contract); every field of
        // Table is valid for any bit pattern (the lazy mutex checks its own state word).
        let table = unsafe { &*ptr.cast::<Table>() };
        let cap = table.capacity.load(Ordering::Relaxed);
        if cap == 0 || cap > MAX_CLAIM_SLOTS as u64 || control_len(cap as usize) > avail {
            return Err(format!(
                "claim table capacity {cap} does not fit the control block ({avail} bytes, 1 to {MAX_CLAIM_SLOTS} slots)"
            ));
        }
        let covered = table.elems.load(Ordering::Relaxed);
        if covered != elems {
            return Err(format!("claim table covers {covered} elements, the header says {elems}"));
        }
        // SAFETY: `cap` slots fit in the control block (checked above) right after the
        // table; any bytes are a valid Slot (atomics and a lazy mutex).
        let slots = unsafe { std::slice::from_raw_parts(ptr.cast::<Table>().add(1).cast::<Slot>(), cap as usize) };
        Ok(Claims { table, slots })
    }

    /// Number of slots.
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Slots in use: marked, and not left by a process that has ended (those are free for
    /// the next claimant to reclaim). A claim abandoned by a thread of a live process, or
    /// held by a killed one that is still exiting, counts. Reads without the table lock:
    /// never waits.
    pub(crate) fn in_use(&self) -> usize {
        self.slots.iter().filter(|s| s.mode.load(Ordering::Acquire) != FREE && !s.owner.left_by_ended_process()).count()
    }

    /// Take the table lock by `deadline`.
    fn lock_table(&self, deadline: Deadline) -> Result<TableGuard<'a>, ClaimError> {
        let lock = &self.table.lock;
        match lock.lock_until(deadline) {
            Ok(Acquired::Clean) => {}
            Ok(Acquired::OwnerDied) => {
                // Every step of claim and release leaves the table consistent (module docs).
                // SAFETY: we hold the table lock.
                if let Err(e) = unsafe { lock.mark_consistent() } {
                    // SAFETY: we hold it; release before reporting.
                    unsafe { lock.unlock() };
                    return Err(e.into());
                }
            }
            Err(LockError::Timeout) => return Err(ClaimError::TableBusy { holder: lock.owner_pid() }),
            Err(LockError::InitStalled { pid }) => return Err(ClaimError::TableBusy { holder: pid }),
            Err(e) => return Err(e.into()),
        }
        Ok(TableGuard(lock))
    }

    /// Claim `range` in `mode`, waiting until `deadline` (`None`: do not wait).
    pub(crate) fn claim(
        &self,
        range: Range<usize>,
        mode: Mode,
        deadline: Option<Deadline>,
    ) -> Result<SlotGuard<'a>, ClaimError> {
        let (start, end) = (range.start as u64, range.end as u64);
        let table_deadline = deadline.unwrap_or_else(|| Deadline::after(TRY_TABLE_WAIT));
        loop {
            let generation = self.table.generation.load(Ordering::Acquire);
            let guard = self.lock_table(table_deadline)?;
            if STOP_IN_TABLE_LOCK.load(Ordering::Relaxed) {
                crate::sys::process::stop_self_forever();
            }
            let (holder, abandoned) = match self.scan(start, end, mode) {
                Scan::Free => {
                    let slot = self.take_slot(start, end, mode);
                    drop(guard);
                    return slot.ok_or(ClaimError::TableFull { capacity: self.capacity() });
                }
                Scan::Mine => {
                    return Err(ClaimError::WouldDeadlock { start: range.start, end: range.end });
                }
                // Abandoned by a thread of this process: never free while it runs.
                Scan::Abandoned(pid) if pid == crate::sys::owner::pid() => {
                    return Err(ClaimError::Abandoned { start: range.start, end: range.end, pid });
                }
                // Abandoned by a thread of another process: free once that process ended
                // (a killed one may still be exiting), so wait like for a live claim.
                Scan::Abandoned(pid) => {
                    drop(guard);
                    (pid, true)
                }
                Scan::Busy(holder) => {
                    drop(guard);
                    (holder, false)
                }
            };
            let refused = |timed_out: bool| match (abandoned, timed_out) {
                (true, _) => ClaimError::Abandoned { start: range.start, end: range.end, pid: holder },
                (false, false) => ClaimError::Conflict { start: range.start, end: range.end, holder },
                (false, true) => ClaimError::Timeout { start: range.start, end: range.end, holder },
            };
            let Some(deadline) = deadline else { return Err(refused(false)) };
            if deadline.passed() {
                return Err(refused(true));
            }
            // Spin (the crate's wait policy) while nothing was released, then park.
            let released = || (self.table.generation.load(Ordering::Acquire) != generation).then_some(());
            spin_then(
                WaitPolicy::process_default(),
                Cadence::HandOff,
                key_of(&self.table.generation),
                &deadline,
                released,
                || {
                    self.table.waiters.fetch_add(1, Ordering::SeqCst);
                    futex::wait(&self.table.generation, generation, deadline, Some(RESCAN));
                    self.table.waiters.fetch_sub(1, Ordering::SeqCst);
                },
            );
        }
    }

    /// Look for live, incompatible, overlapping claims; free abandoned ones on the way.
    fn scan(&self, start: u64, end: u64, mode: Mode) -> Scan {
        let mut verdict = Scan::Free;
        for slot in self.slots {
            let m = slot.mode.load(Ordering::Acquire);
            if m == FREE || mode.compatible(m) {
                continue;
            }
            let (s, e) = (slot.start.load(Ordering::Relaxed), slot.end.load(Ordering::Relaxed));
            let sane = s < e && e <= self.table.elems.load(Ordering::Relaxed);
            if sane && (e <= start || end <= s) {
                continue;
            }
            match slot.owner.try_lock() {
                Err(LockError::WouldBlock) => verdict = Scan::Busy(slot.owner.owner_pid()),
                Err(LockError::WouldDeadlock) => return Scan::Mine,
                Err(LockError::AbandonedByThread { pid }) => {
                    if pid == crate::sys::owner::pid() {
                        return Scan::Abandoned(pid);
                    }
                    if !matches!(verdict, Scan::Busy(_)) {
                        verdict = Scan::Abandoned(pid);
                    }
                }
                Ok(how) => {
                    // Abandoned by a process that ended (or a corrupt slot was left marked).
                    if how == Acquired::OwnerDied {
                        // SAFETY: we hold the owner mutex (try_lock succeeded).
                        let _ = unsafe { slot.owner.mark_consistent() };
                    }
                    slot.mode.store(FREE, Ordering::Release);
                    // SAFETY: we hold the owner mutex.
                    unsafe { slot.owner.unlock() };
                }
                // Not recoverable (nobody can hold it), corrupt, or stalled in its
                // first-use initialisation: not a claim anybody holds; the slot stays
                // marked, and `take_slot` never picks an unusable mutex.
                Err(_) => slot.mode.store(FREE, Ordering::Release),
            }
        }
        verdict
    }

    /// Take a free slot for `[start, end)`, or reclaim one whose claim's process has
    /// ended (a claim that conflicts with nothing is never freed by `scan`). Called with
    /// the table lock held.
    fn take_slot(&self, start: u64, end: u64, mode: Mode) -> Option<SlotGuard<'a>> {
        for (i, slot) in self.slots.iter().enumerate() {
            // A marked slot is taken only once its holder's process has ended (and the
            // try-lock below confirms it): a live holder's claim, a killed one's that is
            // still exiting, and one abandoned by a thread of a live process (refused with
            // `Abandoned`) are left alone.
            if slot.mode.load(Ordering::Acquire) != FREE && !slot.owner.left_by_ended_process() {
                continue;
            }
            match slot.owner.try_lock() {
                Ok(Acquired::Clean) => {}
                Ok(Acquired::OwnerDied) => {
                    // SAFETY: we hold the owner mutex.
                    if unsafe { slot.owner.mark_consistent() }.is_err() {
                        // SAFETY: we hold it.
                        unsafe { slot.owner.unlock() };
                        continue;
                    }
                }
                // Busy (a releaser between clearing `mode` and unlocking), or unusable.
                Err(_) => continue,
            }
            slot.start.store(start, Ordering::Relaxed);
            slot.end.store(end, Ordering::Relaxed);
            slot.mode.store(mode as u32, Ordering::Release);
            return Some(SlotGuard { claims: *self, index: i, _not_send: PhantomData });
        }
        None
    }

    fn release(&self, index: usize) {
        let Some(slot) = self.slots.get(index) else { return };
        // A guard dropped in a forked child (whose parent took the claim) must leave the
        // parent's live slot alone: the child does not hold the owner mutex.
        if !slot.owner.held_by_this_process() {
            return;
        }
        slot.mode.store(FREE, Ordering::Release);
        // SAFETY: this process holds the slot's owner mutex, taken in `take_slot` by this
        // thread (the guard is !Send).
        unsafe { slot.owner.unlock() };
        // SeqCst: ordered before the `waiters` load below (a waiter increments `waiters`,
        // then futex-waits on the old generation).
        self.table.generation.fetch_add(1, Ordering::SeqCst);
        if self.table.waiters.load(Ordering::SeqCst) != 0 {
            futex::wake_all(&self.table.generation);
        }
    }
}

enum Scan {
    Free,
    /// A live claim conflicts; the pid of its process.
    Busy(u32),
    Mine,
    /// A conflicting claim was abandoned by a thread of a process that may still live.
    Abandoned(u32),
}

struct TableGuard<'a>(&'a LazyRawMutex);

impl Drop for TableGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: constructed only by `lock_table` after acquiring the lock on this thread.
        unsafe { self.0.unlock() }
    }
}

/// A live claim; releases its slot on drop. `!Send`: the owner mutex must be unlocked by
/// the thread that locked it.
#[must_use = "the claim is released as soon as it is dropped"]
pub(crate) struct SlotGuard<'a> {
    claims: Claims<'a>,
    index: usize,
    _not_send: PhantomData<*const ()>,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.claims.release(self.index);
    }
}
