//! `RwLock<T>`: a robust, process-shared reader-writer lock.
//!
//! `pthread_rwlock_t` is not robust: a reader or writer that dies leaves it held for
//! ever. So this lock is built from robust mutexes:
//!
//! - the **gate**, a [`LazyRawMutex`]: a writer holds it from the moment it starts
//!   waiting until it unlocks; a reader holds it only while it takes a reader slot. So
//!   a waiting writer stops new readers (writers are not starved).
//! - `READERS` **reader slots**, each a robust *owner mutex* held by its reader for as
//!   long as it reads, plus an `active` hint. A writer holding the gate waits until no
//!   active slot's owner mutex is held; a slot whose reader died is owner-died, so the
//!   writer's `try_lock` gets it and frees it (after glibc, not by polling pids).
//! - a **state** word: `WRITING` from the moment a writer has drained the readers until
//!   its guard drops, `NOT_RECOVERABLE` once an owner-died guard was dropped unrepaired.
//! - a [`ParkWord`] that leaving readers bump, for the writer to sleep on (with a 10 ms
//!   cap, so a reader that died without bumping is noticed at the next rescan).
//!
//! # When a process dies
//!
//! | who dies, when                          | what the survivors get                          |
//! |-----------------------------------------|-------------------------------------------------|
//! | a reader, while reading                 | nothing: its slot is freed by the next writer   |
//! | a reader, while taking a slot           | nothing: the gate and slot are freed            |
//! | a writer, while waiting for readers     | nothing: the data was not touched yet           |
//! | a writer, holding its guard (`WRITING`) | next reader or writer: `AcquireError::OwnerDied` |
//! | a *thread* holding a write guard exits (the process lives on) | every reader and writer: `LockError::AbandonedByThread` while that process lives |
//! | a *thread* holding a read guard exits  | readers go on; writers: `AbandonedByThread` (this process) or busy (another) while it lives |
//!
//! An owner-died guard — read or write — holds the gate, so it is exclusive until it
//! is marked consistent (a reader can only vouch that the data is fine; a writer can
//! repair it first). Dropped without that, the lock becomes permanently
//! [`LockError::NotRecoverable`].
//!
//! A thread that already holds a read or write guard of this lock gets
//! [`LockError::WouldDeadlock`] for another one (tracked per thread by address; a second
//! mapping of the same lock in one process is not recognised). More than `READERS`
//! simultaneous readers wait for a free slot.

use std::cell::{RefCell, UnsafeCell};
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::error::{AcquireError, AcquireResult, LockError, OwnerDied, Recover, Sealed};
use super::park::ParkWord;
use super::shim::Wait;
use super::wait::WaitPolicy;
use super::wait_for::wait_variants;
use super::{Acquired, LazyRawMutex};
use crate::sys::Deadline;

const CLEAN: u32 = 0;
const WRITING: u32 = 1;
const NOT_RECOVERABLE: u32 = 2;
const RESCAN: Duration = Duration::from_millis(10);

/// Default number of reader slots: how many processes (threads) may read at once.
pub const DEFAULT_READERS: usize = 32;

#[repr(C)]
struct ReaderSlot {
    owner: LazyRawMutex,
    active: AtomicU32,
    _pad: u32,
}

thread_local! {
    static READ_HELD: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

fn read_held(key: usize) -> bool {
    READ_HELD.try_with(|v| v.borrow().contains(&key)).unwrap_or(false)
}

/// A robust reader-writer lock in shared memory guarding a `T` (`bytemuck::Pod` when
/// shared between processes), with up to `READERS` concurrent readers. `#[repr(C)]`,
/// position independent, valid as all-zero bytes.
///
/// ```
/// use shmkit::sync::RwLock;
/// let table = RwLock::<[u32; 4]>::new([1, 2, 3, 4]);
/// {
///     let a = table.read()?;
///     let b = std::thread::scope(|s| s.spawn(|| table.read().map(|g| g[1]).ok()).join().unwrap());
///     assert_eq!(b, Some(2)); // two readers at once
///     assert_eq!(a[0], 1);
/// }
/// table.write()?[0] = 10;
/// assert_eq!(table.try_read()?[0], 10);
/// # Ok::<(), shmkit::LockError>(())
/// ```
#[repr(C)]
pub struct RwLock<T, const READERS: usize = DEFAULT_READERS> {
    gate: LazyRawMutex,
    state: AtomicU32,
    _pad: u32,
    park: ParkWord,
    slots: [ReaderSlot; READERS],
    data: UnsafeCell<T>,
}

// SAFETY: readers share `&T` across threads (needs `T: Sync`), a writer gets `&mut T` on
// whatever thread locks (needs `T: Send`); exclusion is by the process-shared locks.
unsafe impl<T: Send + Sync, const R: usize> Sync for RwLock<T, R> {}
// SAFETY: the lock owns its value; unlocked robust mutexes hold no thread-affine state.
unsafe impl<T: Send, const R: usize> Send for RwLock<T, R> {}

impl<T, const R: usize> std::fmt::Debug for RwLock<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RwLock").field("readers", &R).finish_non_exhaustive()
    }
}

impl<T: Default, const R: usize> Default for RwLock<T, R> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T, const R: usize> RwLock<T, R> {
    /// An unlocked lock holding `value`.
    pub fn new(value: T) -> Self {
        Self {
            gate: LazyRawMutex::new(),
            state: AtomicU32::new(CLEAN),
            _pad: 0,
            park: ParkWord::new(),
            slots: std::array::from_fn(|_| ReaderSlot {
                owner: LazyRawMutex::new(),
                active: AtomicU32::new(0),
                _pad: 0,
            }),
            data: UnsafeCell::new(value),
        }
    }

    fn key(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Take the gate; `Ok(true)` when a writer died mid-write (the data may be torn).
    fn enter_gate(&self, deadline: Option<Deadline>) -> Result<bool, LockError> {
        let how = match deadline {
            None => self.gate.try_lock()?,
            Some(d) => self.gate.lock_until(d)?,
        };
        if how == Acquired::OwnerDied {
            // The gate itself protects nothing but the state word, which is always
            // consistent: the death is judged from `state` below.
            // SAFETY: this thread holds the gate.
            if let Err(e) = unsafe { self.gate.mark_consistent() } {
                // SAFETY: as above.
                unsafe { self.gate.unlock() };
                return Err(e);
            }
        }
        let verdict = match self.state.load(Ordering::Acquire) {
            CLEAN => return Ok(false),
            WRITING => return Ok(true),
            NOT_RECOVERABLE => LockError::NotRecoverable,
            _ => LockError::Corrupt,
        };
        // SAFETY: this thread holds the gate.
        unsafe { self.gate.unlock() };
        Err(verdict)
    }

    /// Lock a free reader slot; `None` when all are busy.
    fn take_slot(&self) -> Result<Option<usize>, LockError> {
        for (i, slot) in self.slots.iter().enumerate() {
            match slot.owner.try_lock() {
                Ok(how) => {
                    if how == Acquired::OwnerDied {
                        // A reader died holding this slot; readers change nothing.
                        // SAFETY: we hold the slot mutex.
                        if let Err(e) = unsafe { slot.owner.mark_consistent() } {
                            // SAFETY: as above; give it back before reporting.
                            unsafe { slot.owner.unlock() };
                            return Err(e);
                        }
                    }
                    slot.active.store(1, Ordering::Relaxed);
                    return Ok(Some(i));
                }
                // Busy, ours, or unusable (a slot left not recoverable, or held for ever by
                // a reader guard whose thread exited): try the next.
                Err(
                    LockError::WouldBlock
                    | LockError::WouldDeadlock
                    | LockError::NotRecoverable
                    | LockError::AbandonedByThread { .. },
                ) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Whether a live reader holds a slot; frees the slots of dead readers.
    fn readers_busy(&self) -> Result<bool, LockError> {
        let mut busy = false;
        for slot in &self.slots {
            if slot.active.load(Ordering::Acquire) == 0 {
                continue;
            }
            match slot.owner.try_lock() {
                // Held, or abandoned by a reader thread of another process that may still
                // live (its leaked guard may still read): busy until that process ended.
                Err(LockError::WouldBlock) => busy = true,
                Err(LockError::AbandonedByThread { pid }) if pid != crate::sys::owner::pid() => busy = true,
                // Nobody can hold a not-recoverable slot: it is not a live reader.
                Err(LockError::NotRecoverable) => slot.active.store(0, Ordering::Relaxed),
                Err(e) => return Err(e),
                Ok(how) => {
                    if how == Acquired::OwnerDied {
                        // A reader died while reading: nothing to repair. Should marking
                        // fail, unlocking makes the slot not recoverable, and `take_slot`
                        // skips it from then on.
                        // SAFETY: we hold the slot mutex.
                        let _ = unsafe { slot.owner.mark_consistent() };
                    }
                    slot.active.store(0, Ordering::Relaxed);
                    // SAFETY: we hold the slot mutex.
                    unsafe { slot.owner.unlock() };
                }
            }
        }
        Ok(busy)
    }

    /// Run `attempt` until it yields, sleeping on the park word between tries.
    fn retry<V>(
        &self,
        deadline: Option<Deadline>,
        mut attempt: impl FnMut() -> Result<Option<V>, LockError>,
    ) -> Result<V, LockError> {
        if let Some(v) = attempt()? {
            return Ok(v);
        }
        let Some(deadline) = deadline else { return Err(LockError::WouldBlock) };
        loop {
            let seq = self.park.prepare();
            let r = attempt();
            if !matches!(r, Ok(None)) {
                self.park.done();
                return r.and_then(|v| v.ok_or(LockError::Corrupt));
            }
            let w = self.park.wait(WaitPolicy::process_default(), seq, &deadline, Some(RESCAN));
            self.park.done();
            if w == Wait::TimedOut {
                return Err(LockError::Timeout);
            }
        }
    }

    /// The steps `read` and `write` share: refuse a thread that reads this lock already (it
    /// would wait for itself), pass the gate, and run `attempt` until it yields, releasing the
    /// gate if it fails. Returns its value and whether the gate came back from a dead writer.
    fn gated<V>(
        &self,
        deadline: Option<Deadline>,
        attempt: impl FnMut() -> Result<Option<V>, LockError>,
    ) -> Result<(V, bool), LockError> {
        if read_held(self.key()) {
            return Err(LockError::WouldDeadlock);
        }
        let dirty = self.enter_gate(deadline)?;
        match self.retry(deadline, attempt) {
            Ok(v) => Ok((v, dirty)),
            Err(e) => {
                // SAFETY: enter_gate succeeded on this thread.
                unsafe { self.gate.unlock() };
                Err(e)
            }
        }
    }

    fn read_inner(&self, deadline: Option<Deadline>) -> AcquireResult<RwLockReadGuard<'_, T, R>> {
        let (slot, dirty) = self.gated(deadline, || self.take_slot())?;
        if !dirty {
            // SAFETY: enter_gate succeeded on this thread.
            unsafe { self.gate.unlock() };
        }
        let _ = READ_HELD.try_with(|v| v.borrow_mut().push(self.key()));
        owner_died_if(dirty, RwLockReadGuard { lock: self, slot, holds_gate: dirty, _not_send: PhantomData })
    }

    wait_variants! {
        /// Share the lock with other readers, waiting for a writer to finish.
        pub fn read(&self) -> AcquireResult<RwLockReadGuard<'_, T, R>>;
        /// Read only if no writer holds or waits for the lock and a slot is free now.
        pub fn try_read;
        /// Read, giving up with [`LockError::Timeout`] after `timeout`.
        pub fn read_timeout;
        => read_inner
    }

    fn write_inner(&self, deadline: Option<Deadline>) -> AcquireResult<RwLockWriteGuard<'_, T, R>> {
        let ((), dirty) = self.gated(deadline, || self.readers_busy().map(|busy| (!busy).then_some(())))?;
        self.state.store(WRITING, Ordering::Relaxed);
        owner_died_if(dirty, RwLockWriteGuard { lock: self, dirty, _not_send: PhantomData })
    }

    wait_variants! {
        /// Lock exclusively, waiting for the current writer and readers to finish.
        pub fn write(&self) -> AcquireResult<RwLockWriteGuard<'_, T, R>>;
        /// Lock exclusively only if nobody holds the lock now.
        pub fn try_write;
        /// Lock exclusively, giving up with [`LockError::Timeout`] after `timeout`.
        pub fn write_timeout;
        => write_inner
    }

    /// The value, through exclusive access (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Consume the lock, returning the value.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

/// `guard`, handed over as [`OwnerDied`] when the gate came back from a dead writer.
fn owner_died_if<G: Recover>(dirty: bool, guard: G) -> AcquireResult<G> {
    if dirty { Err(AcquireError::OwnerDied(OwnerDied::new(guard))) } else { Ok(guard) }
}

/// Shared access to the value of an [`RwLock`]; releases its reader slot on drop.
#[must_use = "the read lock is released as soon as the guard is dropped"]
pub struct RwLockReadGuard<'a, T, const R: usize = DEFAULT_READERS> {
    lock: &'a RwLock<T, R>,
    slot: usize,
    /// Owner-died guards hold the gate until marked consistent.
    holds_gate: bool,
    _not_send: PhantomData<*const ()>,
}

impl<T, const R: usize> Sealed for RwLockReadGuard<'_, T, R> {}

impl<T, const R: usize> Recover for RwLockReadGuard<'_, T, R> {
    fn recover(&mut self) -> Result<(), LockError> {
        if self.holds_gate {
            self.lock.state.store(CLEAN, Ordering::Release);
            self.holds_gate = false;
            // SAFETY: this guard's thread took the gate in `read_inner` and kept it.
            unsafe { self.lock.gate.unlock() };
        }
        Ok(())
    }
}

impl<T, const R: usize> Deref for RwLockReadGuard<'_, T, R> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this thread holds a reader slot, so no writer has drained the readers:
        // nobody writes the value while the guard lives.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T, const R: usize> Drop for RwLockReadGuard<'_, T, R> {
    fn drop(&mut self) {
        let lock = self.lock;
        let key = lock.key();
        let _ = READ_HELD.try_with(|v| {
            let mut v = v.borrow_mut();
            if let Some(i) = v.iter().position(|&k| k == key) {
                v.swap_remove(i);
            }
        });
        let Some(slot) = lock.slots.get(self.slot) else { return };
        // Dropped in a forked child, which does not own its parent's slot: change nothing
        // (clearing `active` would hide the parent's live reader from writers).
        if !slot.owner.held_by_this_process() {
            return;
        }
        slot.active.store(0, Ordering::Release);
        // SAFETY: this thread locked the slot in `take_slot`; the guard is !Send.
        unsafe { slot.owner.unlock() };
        if self.holds_gate {
            lock.state.store(NOT_RECOVERABLE, Ordering::Release);
            // SAFETY: this thread kept the gate (owner-died, never marked consistent).
            unsafe { lock.gate.unlock() };
        }
        lock.park.notify_all();
    }
}

/// Exclusive access to the value of an [`RwLock`]; unlocks on drop.
#[must_use = "the write lock is released as soon as the guard is dropped"]
pub struct RwLockWriteGuard<'a, T, const R: usize = DEFAULT_READERS> {
    lock: &'a RwLock<T, R>,
    /// Came back owner-died and not yet marked consistent.
    dirty: bool,
    _not_send: PhantomData<*const ()>,
}

impl<T, const R: usize> Sealed for RwLockWriteGuard<'_, T, R> {}

impl<T, const R: usize> Recover for RwLockWriteGuard<'_, T, R> {
    fn recover(&mut self) -> Result<(), LockError> {
        self.dirty = false;
        Ok(())
    }
}

impl<T, const R: usize> Deref for RwLockWriteGuard<'_, T, R> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this thread holds the gate with every reader drained: exclusive access.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T, const R: usize> DerefMut for RwLockWriteGuard<'_, T, R> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` excludes other uses of this guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: std::fmt::Debug, const R: usize> std::fmt::Debug for RwLockReadGuard<'_, T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl<T: std::fmt::Debug, const R: usize> std::fmt::Debug for RwLockWriteGuard<'_, T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl<T, const R: usize> Drop for RwLockWriteGuard<'_, T, R> {
    fn drop(&mut self) {
        // Dropped in a forked child, which does not own its parent's gate: change nothing.
        if !self.lock.gate.held_by_this_process() {
            return;
        }
        let next = if self.dirty { NOT_RECOVERABLE } else { CLEAN };
        self.lock.state.store(next, Ordering::Release);
        // SAFETY: this thread took the gate in `write_inner`; the guard is !Send.
        unsafe { self.lock.gate.unlock() };
    }
}
