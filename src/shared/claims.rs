//! Range claims: a robust reader/writer lock over index ranges of a shared payload.
//!
//! # Protocol
//!
//! The control block holds a table of `capacity` slots behind one robust mutex (the
//! *table lock*). A live claim is a slot with `mode != FREE`, a half-open element range
//! `[start, end)`, and its *owner mutex* held by the claiming thread for as long as the
//! claim lives. The owner mutex is the liveness token: when the claiming process dies,
//! the kernel marks it owner-died, and the next scanner that `try_lock`s it learns the
//! claim is abandoned and frees the slot. No pids are involved.
//!
//! - **Claim** (under the table lock): for each live slot that overlaps and is not
//!   compatible (`Shared`+`Shared` and `Atomic`+`Atomic` are; anything with `Exclusive`
//!   is not), `try_lock` its owner: busy → conflict; owner-died or free → the claim is
//!   abandoned: clear it. Without conflict: take a free slot by locking its owner mutex,
//!   write `start`/`end`, then `mode` (Release). With a conflict: give up (`try_*`), or
//!   drop the table lock and futex-wait on `generation` (at most 10 ms at a time, so a
//!   dead holder is noticed on the next scan), then rescan.
//! - **Release** (under the table lock): `mode = FREE`, unlock the owner mutex, bump
//!   `generation`, and wake waiters if any.
//!
//! Every step leaves the table consistent, so a process killed anywhere inside either
//! path leaves nothing to repair: the next table-lock holder sees owner-died on the table
//! lock and simply marks it consistent. Slot fields come from shared memory and are
//! validated on every scan; a corrupt range is treated as covering everything.

use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::sync::{Acquired, LockError, RawMutex};
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
    #[error("range {start}..{end} overlaps a live claim of another thread or process; wait, or claim another range")]
    Conflict {
        /// Requested start.
        start: usize,
        /// Requested end.
        end: usize,
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
    #[error("timed out waiting for range {start}..{end}: another process holds an overlapping claim")]
    Timeout {
        /// Requested start.
        start: usize,
        /// Requested end.
        end: usize,
    },
    /// Every slot of the claim table is in use.
    #[error("all {capacity} claim slots are in use: release claims, or create the array with more slots")]
    TableFull {
        /// Slots in the table.
        capacity: usize,
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
    owner: RawMutex,
    mode: AtomicU32,
    _pad: u32,
    start: AtomicU64,
    end: AtomicU64,
}

/// The claim table header; `capacity` slots follow it.
///
/// Layout (offsets from the start of the control block, which other languages rely on):
/// `0 init: u32`, `4 generation: u32`, `8 waiters: u32`, `12 pad`, `16 capacity: u64`,
/// `24 elems: u64`, `32 lock: pthread_mutex_t`, then the slots.
#[repr(C)]
pub(crate) struct Table {
    /// 0: zero-filled, never initialised (a table written by another language); `TABLE_READY`:
    /// initialised; anything else: a process is initialising it (its token).
    init: AtomicU32,
    generation: AtomicU32,
    waiters: AtomicU32,
    _pad: u32,
    capacity: AtomicU64,
    elems: AtomicU64,
    lock: RawMutex,
}

const TABLE_READY: u32 = 0x434c_4d31; // "CLM1"
/// How long an initialiser may take before another process assumes it died and takes over.
const INIT_TAKEOVER: Duration = Duration::from_secs(1);

const RESCAN: Duration = Duration::from_millis(10);

/// Bytes of control block a table of `capacity` slots needs.
pub(crate) const fn control_len(capacity: usize) -> usize {
    std::mem::size_of::<Table>() + capacity * std::mem::size_of::<Slot>()
}

/// A claim table living in a segment's control block.
#[derive(Clone, Copy)]
pub(crate) struct Claims<'a> {
    table: &'a Table,
    slots: &'a [Slot],
}

impl<'a> Claims<'a> {
    /// Initialise a table at `ptr` for `elems` elements.
    ///
    /// # Safety
    ///
    /// `ptr` must be valid for writes of `control_len(capacity)` bytes, aligned for
    /// `Table`, and not yet visible to any other thread or process.
    pub(crate) unsafe fn init(ptr: *mut u8, capacity: usize, elems: u64) -> Result<(), LockError> {
        let table = ptr.cast::<Table>();
        // SAFETY: per the contract, the region is ours alone and large enough for the table
        // and its slots; the memory starts zeroed (fresh segment), which is a valid value
        // for the atomics, and every mutex is initialised before publication.
        unsafe {
            std::ptr::addr_of_mut!((*table).capacity).write(AtomicU64::new(capacity as u64));
            std::ptr::addr_of_mut!((*table).elems).write(AtomicU64::new(elems));
            Self::init_locks(table, capacity)?;
            (*table).init.store(TABLE_READY, Ordering::Release);
        }
        Ok(())
    }

    /// Initialise the table lock and every slot's owner mutex, and free every slot.
    ///
    /// # Safety
    ///
    /// `table` must be followed by `capacity` slots in mapped memory, and no process may use
    /// any of these mutexes until this returns (the `init` word keeps them out).
    unsafe fn init_locks(table: *mut Table, capacity: usize) -> Result<(), LockError> {
        // SAFETY: per the contract; RawMutex wraps its pthread_mutex_t in an UnsafeCell, so
        // writing through pointers derived from shared references is allowed.
        unsafe {
            RawMutex::init(std::ptr::addr_of_mut!((*table).lock))?;
            let slots = table.add(1).cast::<Slot>();
            for i in 0..capacity {
                RawMutex::init(std::ptr::addr_of_mut!((*slots.add(i)).owner))?;
                (*slots.add(i)).mode.store(FREE, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Initialise a zero-filled table (written by another language) exactly once, even when
    /// several processes attach at the same time or an initialiser dies half-way.
    ///
    /// The `init` word goes 0 → token (CAS, one winner) → `TABLE_READY`. Nobody touches the
    /// mutexes before `TABLE_READY`, so an initialiser that stays silent for
    /// [`INIT_TAKEOVER`] can be replaced: the next process CASes the stale token to its own
    /// (again one winner) and initialises from scratch.
    fn ensure_ready(table: &Table, capacity: usize) -> Result<(), String> {
        let mut seen = table.init.load(Ordering::Acquire);
        let mut since = std::time::Instant::now();
        loop {
            if seen == TABLE_READY {
                return Ok(());
            }
            let stale = seen != 0 && since.elapsed() >= INIT_TAKEOVER;
            if seen == 0 || stale {
                // Odd (never 0), random, and different from the stale token, so every waiter
                // sees the takeover as a change and restarts its own clock.
                let mut buf = [0u8; 4];
                let _ = crate::sys::fd::random_bytes(&mut buf);
                let mut token = u32::from_ne_bytes(buf) | 1;
                while token == seen || token == TABLE_READY {
                    token = token.wrapping_add(2);
                }
                if table.init.compare_exchange(seen, token, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    let ptr = std::ptr::from_ref(table).cast_mut();
                    // SAFETY: `capacity` slots follow the table (validated by `attach`), and the
                    // CAS made us the only initialiser while nobody may use the mutexes yet.
                    unsafe { Self::init_locks(ptr, capacity) }.map_err(|e| e.to_string())?;
                    table.init.store(TABLE_READY, Ordering::Release);
                    return Ok(());
                }
            } else {
                std::thread::sleep(Duration::from_millis(1));
            }
            let now = table.init.load(Ordering::Acquire);
            if now != seen {
                seen = now;
                since = std::time::Instant::now();
            }
        }
    }

    /// View the table at `ptr`, checking its recorded shape against what the segment allows.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a published claim table of a mapping that outlives `'a`, with
    /// `avail` bytes of control block.
    pub(crate) unsafe fn attach(ptr: *mut u8, avail: usize, elems: u64) -> Result<Claims<'a>, String> {
        if avail < std::mem::size_of::<Table>() {
            return Err("control block too small for a claim table".into());
        }
        // SAFETY: in bounds (checked above), aligned (control block starts at offset 128),
        // published; every field of Table is valid for any bit pattern except the mutex,
        // which glibc validates on use.
        let table = unsafe { &*ptr.cast::<Table>() };
        let cap = table.capacity.load(Ordering::Relaxed);
        if cap == 0 || cap > (avail as u64) / std::mem::size_of::<Slot>() as u64 || control_len(cap as usize) > avail {
            return Err(format!("claim table capacity {cap} does not fit the control block"));
        }
        let covered = table.elems.load(Ordering::Relaxed);
        if covered != elems {
            return Err(format!("claim table covers {covered} elements, the header says {elems}"));
        }
        Self::ensure_ready(table, cap as usize)?;
        // SAFETY: `cap` slots fit in the control block (checked above) right after the table,
        // and their mutexes are initialised (`ensure_ready`).
        let slots = unsafe { std::slice::from_raw_parts(ptr.cast::<Table>().add(1).cast::<Slot>(), cap as usize) };
        Ok(Claims { table, slots })
    }

    /// Number of slots.
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Slots currently marked in use (claims whose holder may have died are counted until
    /// the next claimant frees them).
    pub(crate) fn in_use(&self) -> usize {
        self.slots.iter().filter(|s| s.mode.load(Ordering::Acquire) != FREE).count()
    }

    fn lock_table(&self) -> Result<TableGuard<'a>, LockError> {
        match self.table.lock.lock()? {
            Acquired::Clean => {}
            Acquired::OwnerDied => {
                // Every step of claim and release leaves the table consistent (module docs).
                // SAFETY: we hold the table lock.
                if let Err(e) = unsafe { self.table.lock.mark_consistent() } {
                    // SAFETY: we hold it; release before reporting.
                    unsafe { self.table.lock.unlock() };
                    return Err(e);
                }
            }
        }
        Ok(TableGuard(&self.table.lock))
    }

    /// Claim `range` in `mode`, waiting until `deadline` (`None`: do not wait).
    pub(crate) fn claim(
        &self,
        range: Range<usize>,
        mode: Mode,
        deadline: Option<Deadline>,
    ) -> Result<SlotGuard<'a>, ClaimError> {
        let (start, end) = (range.start as u64, range.end as u64);
        loop {
            let generation = self.table.generation.load(Ordering::Acquire);
            let guard = self.lock_table()?;
            match self.scan(start, end, mode) {
                Scan::Free => {
                    let slot = self.take_slot(start, end, mode);
                    drop(guard);
                    return slot.ok_or(ClaimError::TableFull { capacity: self.capacity() });
                }
                Scan::Mine => {
                    return Err(ClaimError::WouldDeadlock { start: range.start, end: range.end });
                }
                Scan::Busy => drop(guard),
            }
            let Some(deadline) = deadline else {
                return Err(ClaimError::Conflict { start: range.start, end: range.end });
            };
            if deadline.passed() {
                return Err(ClaimError::Timeout { start: range.start, end: range.end });
            }
            self.table.waiters.fetch_add(1, Ordering::SeqCst);
            futex::wait(&self.table.generation, generation, deadline, Some(RESCAN));
            self.table.waiters.fetch_sub(1, Ordering::SeqCst);
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
                Err(LockError::WouldBlock) => verdict = Scan::Busy,
                Err(LockError::WouldDeadlock) => return Scan::Mine,
                Ok(how) => {
                    // Abandoned: its owner died (or a corrupt slot was left marked).
                    if how == Acquired::OwnerDied {
                        // SAFETY: we hold the owner mutex (try_lock succeeded).
                        let _ = unsafe { slot.owner.mark_consistent() };
                    }
                    slot.mode.store(FREE, Ordering::Release);
                    // SAFETY: we hold the owner mutex.
                    unsafe { slot.owner.unlock() };
                }
                Err(_) => {
                    // The owner mutex is unusable (not recoverable or corrupt): nobody can
                    // hold it, so the claim is dead. Re-initialise it under the table lock,
                    // the only place slot mutexes are taken by anyone but their owner.
                    slot.mode.store(FREE, Ordering::Release);
                    reinit(&slot.owner);
                }
            }
        }
        verdict
    }

    /// Take a free slot for `[start, end)`. Called with the table lock held.
    fn take_slot(&self, start: u64, end: u64, mode: Mode) -> Option<SlotGuard<'a>> {
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.mode.load(Ordering::Acquire) != FREE {
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
                Err(LockError::WouldBlock) | Err(LockError::WouldDeadlock) => continue,
                Err(_) => {
                    reinit(&slot.owner);
                    continue;
                }
            }
            slot.start.store(start, Ordering::Relaxed);
            slot.end.store(end, Ordering::Relaxed);
            slot.mode.store(mode as u32, Ordering::Release);
            return Some(SlotGuard { claims: *self, index: i, _not_send: PhantomData });
        }
        None
    }

    fn release(&self, index: usize) {
        let slot = &self.slots[index];
        // Even if the table lock is broken we must give the owner mutex back on this thread.
        let guard = self.lock_table().ok();
        slot.mode.store(FREE, Ordering::Release);
        // SAFETY: the slot's owner mutex was locked by this thread in `take_slot` and the
        // guard is !Send, so this is the same thread.
        unsafe { slot.owner.unlock() };
        self.table.generation.fetch_add(1, Ordering::Release);
        drop(guard);
        if self.table.waiters.load(Ordering::SeqCst) != 0 {
            futex::wake_all(&self.table.generation);
        }
    }
}

enum Scan {
    Free,
    Busy,
    Mine,
}

fn reinit(m: &RawMutex) {
    // SAFETY: called under the table lock on a mutex nobody can hold (try_lock reported it
    // unusable); only table-lock holders lock slot mutexes of free slots.
    let _ = unsafe { RawMutex::init(std::ptr::from_ref(m).cast_mut()) };
}

struct TableGuard<'a>(&'a RawMutex);

impl Drop for TableGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: constructed only by `lock_table` after acquiring the lock on this thread.
        unsafe { self.0.unlock() }
    }
}

/// A live claim; releases its slot on drop. `!Send`: the owner mutex must be unlocked by
/// the thread that locked it.
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
