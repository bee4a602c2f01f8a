//! `SharedList<T>`: a bounded list in shared memory, like `Manager().list()`.
//!
//! Control block: `ListMeta` (64 bytes, written once), then `ListHead` (the robust lock, the
//! length and the journal), then the journal's copy of one element. The payload is the
//! `capacity` elements.
//!
//! `push` writes the element past the end and then stores the new length; `pop` and `clear`
//! only store a length: each has one single-word commit, so a crash applies it fully or not at
//! all. `set` of a word-sized element is one atomic store; larger elements are copied into the
//! journal first (state `SET`, Release), overwritten, and the journal retired; the next locker
//! after a crash copies the old element back.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, compiler_fence};
use std::time::Duration;

use super::error::ManagerError;
use super::stripe::{is_word, store_word};
use crate::segment::header::HEADER_SIZE;
use crate::segment::kind::{Create, SegmentKind, debug_handle, segment_handle};
use crate::segment::{Expect, Kind, Layout, Segment, SegmentError};
use crate::shared::{Element, fnv1a, type_info};
use crate::sync::{Acquired, RawMutex};
use crate::sys::Deadline;

const LIST_MAGIC: u32 = u32::from_le_bytes(*b"LST2");
const IDLE: u32 = 0;
const SET: u32 = 1;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ListMeta {
    magic: u32,
    elem_size: u32,
    capacity: u64,
    elem_align: u32,
    _pad: u32,
    /// FNV-1a of this record with `check` zero: a field a peer overwrote fails it at open.
    check: u64,
    reserved: [u32; 8],
}

impl ListMeta {
    fn check_word(&self) -> u64 {
        fnv1a(bytemuck::bytes_of(&ListMeta { check: 0, ..*self }))
    }
}

const _: () = assert!(std::mem::size_of::<ListMeta>() == 64);

#[repr(C)]
struct ListHead {
    lock: RawMutex,
    state: AtomicU32,
    _pad: u32,
    len: AtomicU64,
    journal_index: AtomicU64,
    owner_died: AtomicU64,
    rollbacks: AtomicU64,
}

const HEAD_OFF: usize = 64;

fn jvalue_off<T>() -> usize {
    let end = HEAD_OFF + std::mem::size_of::<ListHead>();
    let align = std::mem::align_of::<T>().max(8);
    end.div_ceil(align) * align
}

fn control_len<T>() -> usize {
    jvalue_off::<T>() + std::mem::size_of::<T>()
}

/// A bounded list of `T` in shared memory, like `multiprocessing.Manager().list()` without the
/// manager process. Every operation takes the list's robust lock and copies elements in or out;
/// a process killed inside one leaves the list as before or as after it.
///
/// ```
/// let l = shmkit::manager::SharedList::<f64>::create(None, 100)?;
/// l.push(1.0)?;
/// l.push(2.0)?;
/// let peer = shmkit::manager::SharedList::<f64>::open(l.name().unwrap())?;
/// peer.set(0, 10.0)?;
/// peer.update(1, |x| x * 3.0)?;
/// assert_eq!(l.snapshot()?, vec![10.0, 6.0]);
/// assert_eq!(l.pop()?, Some(6.0));
/// assert_eq!(l.len()?, 1);
/// # Ok::<(), shmkit::manager::ManagerError>(())
/// ```
pub struct SharedList<T: Element> {
    seg: Segment,
    capacity: u64,
    timeout: Option<Duration>,
    _t: PhantomData<fn() -> T>,
}

impl<T: Element> std::fmt::Debug for SharedList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_handle(f, "SharedList", &self.seg, T::TYPE_NAME).field("capacity", &self.capacity).finish()
    }
}

/// The list's lock, held; released on drop. `!Send`.
struct Locked<'a, T: Element> {
    list: &'a SharedList<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T: Element> Drop for Locked<'_, T> {
    fn drop(&mut self) {
        // SAFETY: `Locked` exists only after `lock` acquired the lock on this thread.
        unsafe { self.list.head().lock.unlock() }
    }
}

impl<T: Element> Locked<'_, T> {
    fn len(&self) -> Result<u64, ManagerError> {
        let len = self.list.head().len.load(Ordering::Relaxed);
        if len > self.list.capacity {
            return Err(ManagerError::corrupt_list(format!("length {len} exceeds capacity {}", self.list.capacity)));
        }
        Ok(len)
    }

    fn index(&self, index: usize) -> Result<usize, ManagerError> {
        let len = self.len()?;
        if index as u64 >= len {
            return Err(ManagerError::OutOfBounds { index, len: len as usize });
        }
        Ok(index)
    }

    fn read(&self, i: usize) -> T {
        // SAFETY: `i < len <= capacity` (checked by the callers), so the element is inside the
        // payload and aligned; T is Pod; the lock keeps writers out.
        unsafe { std::ptr::read(self.list.elem_ptr(i).cast::<T>()) }
    }

    fn write(&self, i: usize, v: T) {
        let p = self.list.elem_ptr(i);
        if is_word::<T>() {
            // SAFETY: in bounds and aligned (see `read`), `is_word` holds.
            unsafe { store_word(p, v) };
            return;
        }
        let head = self.list.head();
        head.journal_index.store(i as u64, Ordering::Relaxed);
        // SAFETY: the journal's element copy and element `i` are both `size_of::<T>()` bytes
        // inside the mapping and do not overlap; we hold the lock.
        unsafe { std::ptr::copy_nonoverlapping(p, self.list.jvalue_ptr(), std::mem::size_of::<T>()) };
        head.state.store(SET, Ordering::Release);
        compiler_fence(Ordering::SeqCst);
        // SAFETY: as in `read`, for writing.
        unsafe { std::ptr::write(p.cast::<T>(), v) };
        compiler_fence(Ordering::SeqCst);
        head.state.store(IDLE, Ordering::Release);
    }

    /// Undo a `set` interrupted by its holder's death.
    fn roll_back(&self) -> Result<(), ManagerError> {
        let head = self.list.head();
        match head.state.load(Ordering::Acquire) {
            IDLE => return Ok(()),
            SET => {
                let i = head.journal_index.load(Ordering::Relaxed);
                if i >= self.list.capacity {
                    return Err(ManagerError::corrupt_list(format!("journal index {i}")));
                }
                // SAFETY: element `i < capacity` and the journal copy, as in `write`.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.list.jvalue_ptr(),
                        self.list.elem_ptr(i as usize),
                        std::mem::size_of::<T>(),
                    )
                };
            }
            other => return Err(ManagerError::corrupt_list(format!("journal state {other}"))),
        }
        compiler_fence(Ordering::SeqCst);
        head.state.store(IDLE, Ordering::Release);
        head.rollbacks.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl<T: Element> SegmentKind for SharedList<T> {
    type Error = ManagerError;

    fn expect() -> Expect {
        Expect { kind: Some(Kind::List), elem: Some(type_info::<T>()), min_control_len: control_len::<T>() }
    }

    fn attach(seg: Segment) -> Result<Self, ManagerError> {
        let h = seg.header().ok_or_else(|| SegmentError::NotShmkit { name: seg.name().unwrap_or("").to_owned() })?;
        // SAFETY: the control block holds at least `control_len::<T>()` > 64 bytes (checked by
        // `open_typed` against `expect`), 8-aligned; ListMeta is Pod; the copy is validated below.
        let meta: ListMeta = unsafe { std::ptr::read_volatile(seg.control_ptr().cast::<ListMeta>()) };
        let ok = meta.magic == LIST_MAGIC
            && meta.check == meta.check_word()
            && meta._pad == 0
            && meta.reserved == [0; 8]
            && meta.capacity == h.elem_count
            && meta.capacity > 0
            && meta.elem_size as usize == std::mem::size_of::<T>()
            && meta.elem_align as usize == std::mem::align_of::<T>()
            && h.payload_offset as usize - HEADER_SIZE >= control_len::<T>();
        if !ok {
            return Err(ManagerError::corrupt_list("its record does not match its header"));
        }
        Ok(SharedList { seg, capacity: meta.capacity, timeout: None, _t: PhantomData })
    }
}

impl<T: Element> Create<usize> for SharedList<T> {
    fn layout(&capacity: &usize) -> Result<Layout, ManagerError> {
        if capacity == 0 {
            return Err(ManagerError::Invalid { what: "list capacity", reason: "it must be at least 1".into() });
        }
        if capacity > Self::MAX_CAPACITY {
            return Err(ManagerError::TooLarge {
                what: "list capacity",
                requested: capacity as u64,
                max: Self::MAX_CAPACITY as u64,
            });
        }
        Ok(Layout {
            kind: Kind::List,
            elem: type_info::<T>(),
            elem_count: capacity as u64,
            control_len: control_len::<T>(),
            payload_align: 64,
        })
    }

    unsafe fn init(seg: &Segment, capacity: usize) -> Result<(), SegmentError> {
        let mut meta = ListMeta {
            magic: LIST_MAGIC,
            elem_size: std::mem::size_of::<T>() as u32,
            capacity: capacity as u64,
            elem_align: std::mem::align_of::<T>() as u32,
            _pad: 0,
            check: 0,
            reserved: [0; 8],
        };
        meta.check = meta.check_word();
        let ctl = seg.control_ptr();
        // SAFETY: the control block holds `control_len::<T>()` bytes, 64-aligned, zeroed, of a
        // segment nobody else can see yet (the caller's contract).
        unsafe {
            std::ptr::write(ctl.cast::<ListMeta>(), meta);
            let head = ctl.add(HEAD_OFF).cast::<ListHead>();
            RawMutex::init(std::ptr::addr_of_mut!((*head).lock))
                .map_err(|e| SegmentError::io("pthread_mutex_init", seg.name().unwrap_or(""), std::io::Error::other(e)))
        }
    }
}

segment_handle! {
    impl[T: Element] SharedList<T>, "list", ManagerError, seg,
    (capacity: usize) => capacity
}

impl<T: Element> SharedList<T> {
    /// Most elements a list of `T` may be created for: its elements must fit in half the
    /// address space. Larger capacities give [`ManagerError::TooLarge`] (and a capacity that
    /// `/dev/shm` cannot hold gives a segment error).
    pub const MAX_CAPACITY: usize =
        (isize::MAX as usize / 2) / if std::mem::size_of::<T>() == 0 { 1 } else { std::mem::size_of::<T>() };

    fn head(&self) -> &ListHead {
        // SAFETY: the control block holds `control_len::<T>()` bytes (checked at creation and
        // open), so the 8-aligned head at HEAD_OFF is in bounds; its mutex was initialised
        // before publication and the other fields are atomics.
        unsafe { &*self.seg.control_ptr().add(HEAD_OFF).cast::<ListHead>() }
    }

    fn jvalue_ptr(&self) -> *mut u8 {
        self.seg.control_ptr().wrapping_add(jvalue_off::<T>())
    }

    fn elem_ptr(&self, i: usize) -> *mut u8 {
        self.seg.as_ptr().wrapping_add(i * std::mem::size_of::<T>())
    }

    fn lock(&self) -> Result<Locked<'_, T>, ManagerError> {
        let head = self.head();
        let how = head.lock.lock_until(Deadline::from_timeout(self.timeout))?;
        let locked = Locked { list: self, _not_send: PhantomData };
        let died = how == Acquired::OwnerDied;
        if died {
            head.owner_died.fetch_add(1, Ordering::Relaxed);
        }
        let repaired = if died || head.state.load(Ordering::Acquire) != IDLE { locked.roll_back() } else { Ok(()) };
        if died {
            // SAFETY: we hold the lock.
            unsafe { head.lock.mark_consistent() }?;
        }
        repaired?;
        Ok(locked)
    }

    /// Append `value`; [`ManagerError::Full`] when the list holds `capacity` elements.
    pub fn push(&self, value: T) -> Result<(), ManagerError> {
        let l = self.lock()?;
        let len = l.len()?;
        if len == self.capacity {
            return Err(ManagerError::Full { what: "list", capacity: self.capacity });
        }
        // SAFETY: `len < capacity`: an element slot past the end, invisible until the length
        // is stored; aligned; we hold the lock.
        unsafe { std::ptr::write(self.elem_ptr(len as usize).cast::<T>(), value) };
        compiler_fence(Ordering::SeqCst);
        self.head().len.store(len + 1, Ordering::Release);
        Ok(())
    }

    /// Remove and return the last element.
    pub fn pop(&self) -> Result<Option<T>, ManagerError> {
        let l = self.lock()?;
        let len = l.len()?;
        if len == 0 {
            return Ok(None);
        }
        let v = l.read(len as usize - 1);
        self.head().len.store(len - 1, Ordering::Release);
        Ok(Some(v))
    }

    /// Copy out element `index`.
    pub fn get(&self, index: usize) -> Result<T, ManagerError> {
        let l = self.lock()?;
        Ok(l.read(l.index(index)?))
    }

    /// Replace element `index`; returns the old one.
    pub fn set(&self, index: usize, value: T) -> Result<T, ManagerError> {
        self.update_with(index, |_| value)
    }

    /// Atomically replace element `index` with `f(element)`; returns the new one. `f` runs
    /// under the list's lock: keep it short and do not use the list inside it.
    ///
    /// ```
    /// let l = shmkit::manager::SharedList::<u64>::anonymous(4)?;
    /// l.push(5)?;
    /// assert_eq!(l.update(0, |x| x + 1)?, 6);
    /// assert!(l.update(1, |x| x).is_err()); // out of bounds
    /// # Ok::<(), shmkit::manager::ManagerError>(())
    /// ```
    pub fn update(&self, index: usize, f: impl FnOnce(T) -> T) -> Result<T, ManagerError> {
        let mut new = None;
        self.update_with(index, |old| {
            let v = f(old);
            new = Some(v);
            v
        })?;
        new.ok_or_else(|| ManagerError::corrupt_list("update produced no value"))
    }

    fn update_with(&self, index: usize, f: impl FnOnce(T) -> T) -> Result<T, ManagerError> {
        let l = self.lock()?;
        let i = l.index(index)?;
        let old = l.read(i);
        l.write(i, f(old));
        Ok(old)
    }

    /// Number of elements.
    pub fn len(&self) -> Result<usize, ManagerError> {
        Ok(self.lock()?.len()? as usize)
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// Remove every element.
    pub fn clear(&self) -> Result<(), ManagerError> {
        let _l = self.lock()?;
        self.head().len.store(0, Ordering::Release);
        Ok(())
    }

    /// Every element, copied out under the lock.
    pub fn snapshot(&self) -> Result<Vec<T>, ManagerError> {
        let l = self.lock()?;
        let len = l.len()? as usize;
        Ok((0..len).map(|i| l.read(i)).collect())
    }

    /// Recovery counters (for `crate::testing::stats`).
    pub(crate) fn stats(&self) -> super::RecoveryStats {
        let head = self.head();
        super::RecoveryStats {
            owner_died: head.owner_died.load(Ordering::Relaxed),
            rollbacks: head.rollbacks.load(Ordering::Relaxed),
        }
    }

    /// Whether the journal records a `set` in flight (for tests that stop a process there).
    pub(crate) fn journal_in_flight(&self) -> bool {
        self.head().state.load(Ordering::Relaxed) != IDLE
    }

    /// The fixed capacity.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Fail operations with [`LockError::Timeout`](crate::LockError::Timeout) after waiting
    /// `timeout` for the lock (`None`, the default: wait as long as it takes).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }
}
