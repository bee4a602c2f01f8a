//! Where a ring's words live in a segment, how they are initialised before publication,
//! and how an opener validates them (hostile bytes give an error, never a panic or UB).
//!
//! ```text
//! control block (after the 128-byte segment header), per ring:
//!   RingHeader   5 cache lines: info, head, tail, consumer waiters, producer waiters
//!   SlotMeta[capacity]   64 bytes each: stamp (u64), robust pthread mutex (40 bytes)
//! payload: per ring, capacity slots of `stride` bytes at `data_offset`
//!   fixed-size queues: the element itself; byte queues: u64 length, then the bytes
//! ```

use std::mem::size_of;
use std::sync::atomic::Ordering::Relaxed;

use super::park::ProcessHook;
use super::ring::{Lock, Ring, RingHeader, SlotLock, SlotMeta, free};
use crate::segment::SegmentError;
use crate::shared::fnv1a;
use crate::sync::{Acquired, LockError, RawMutex};

/// Bytes before each message in a byte ring's slot: the message length (`u64`).
pub(crate) const LEN_PREFIX: usize = 8;

/// Slot stride of a byte ring for messages of up to `max` bytes: length word plus data,
/// 64-byte multiple.
pub(crate) fn byte_stride(max: usize) -> Result<u64, SegmentError> {
    let too_large =
        || SegmentError::TooLarge { requested: max as u64, capacity: isize::MAX as u64, where_: "a queue slot" };
    let raw = max.checked_add(LEN_PREFIX).ok_or_else(too_large)?;
    Ok(raw.checked_next_multiple_of(64).ok_or_else(too_large)? as u64)
}

/// Format of the ring words; bumped when they change (2: the `check` word).
pub(crate) const RING_FORMAT: u32 = 0x5249_4E02;

/// Bytes of control block one ring of `capacity` slots needs.
pub(crate) const fn ring_len(capacity: usize) -> usize {
    size_of::<RingHeader>() + capacity * size_of::<SlotMeta<RawMutex>>()
}

impl SlotLock for RawMutex {
    #[inline]
    fn try_acquire(&self) -> Lock {
        match self.try_lock() {
            Ok(Acquired::Clean) => Lock::Acquired,
            Ok(Acquired::OwnerDied) => {
                // Every step of the ring protocol leaves its words consistent; the new
                // holder re-reads them and repairs what the dead holder left (module docs).
                // SAFETY: try_lock succeeded, so this thread holds the lock.
                if unsafe { self.mark_consistent() }.is_ok() {
                    Lock::Acquired
                } else {
                    // SAFETY: as above; give it back before reporting.
                    unsafe { self.unlock() };
                    Lock::Broken
                }
            }
            Err(LockError::WouldBlock) | Err(LockError::WouldDeadlock) => Lock::Busy,
            Err(_) => Lock::Broken,
        }
    }

    #[inline]
    unsafe fn release(&self) {
        // SAFETY: the caller holds the lock (trait contract).
        unsafe { self.unlock() }
    }
}

/// The shape of one ring, as the creator chooses it and the opener checks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    pub(crate) capacity: u64,
    pub(crate) stride: u64,
    pub(crate) max_msg: u64,
    pub(crate) data_offset: u64,
}

impl Shape {
    /// The check word of a ring with this shape and these `format` and `flags` words.
    fn check_word(&self, format: u32, flags: u32) -> u64 {
        let mut b = [0u8; 40];
        b[..4].copy_from_slice(&format.to_ne_bytes());
        b[4..8].copy_from_slice(&flags.to_ne_bytes());
        for (i, w) in [self.capacity, self.stride, self.max_msg, self.data_offset].into_iter().enumerate() {
            b[8 + 8 * i..16 + 8 * i].copy_from_slice(&w.to_ne_bytes());
        }
        fnv1a(&b)
    }
}

/// Initialise a ring in unpublished memory.
///
/// # Safety
///
/// `ctl` must be valid for writes of `ring_len(shape.capacity)` bytes, 64-byte aligned,
/// zero-filled, and invisible to every other thread and process until the segment is
/// published.
pub(crate) unsafe fn init(ctl: *mut u8, shape: Shape) -> Result<(), LockError> {
    let hdr = ctl.cast::<RingHeader>();
    // SAFETY: per the contract the region is ours, large enough and aligned; zero bytes
    // are valid atomics, and we only store through shared references to them.
    let hdr_ref = unsafe { &*hdr };
    let info = &hdr_ref.info.0;
    info.capacity.store(shape.capacity, Relaxed);
    info.stride.store(shape.stride, Relaxed);
    info.max_msg.store(shape.max_msg, Relaxed);
    info.data_offset.store(shape.data_offset, Relaxed);
    info.format.store(RING_FORMAT, Relaxed);
    info.check.store(shape.check_word(RING_FORMAT, 0), Relaxed);
    // SAFETY: the slots follow the header inside the region (ring_len); SlotMeta is 64-byte
    // aligned and so is the header's size.
    let slots = unsafe { hdr.add(1).cast::<SlotMeta<RawMutex>>() };
    for i in 0..shape.capacity as usize {
        // SAFETY: slot `i` is inside the region; nobody else can see it yet.
        unsafe {
            let slot = slots.add(i);
            RawMutex::init(std::ptr::addr_of_mut!((*slot).lock))?;
            (*slot).stamp.store(free(i as u64), Relaxed);
        }
    }
    Ok(())
}

/// A validated ring inside a live mapping: raw pointers, because the mapping is owned by
/// the handle that holds this (it never moves and outlives every use).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawRing {
    hdr: *const RingHeader,
    slots: *const SlotMeta<RawMutex>,
    data: *mut u8,
    pub(crate) shape: Shape,
}

// SAFETY: the pointers refer to shared memory accessed only through atomics, robust locks,
// and slot data owned through the ring protocol; nothing is thread-affine.
unsafe impl Send for RawRing {}
// SAFETY: as above.
unsafe impl Sync for RawRing {}

impl RawRing {
    /// Check the ring at `ctl` against the shape the segment header implies: the format and
    /// flags words, the check word over the fixed words, and each fixed word. For byte rings
    /// (`expect.max_msg != expect.stride`) any `max_msg` whose slot stride is the header's is
    /// accepted and reported in the result's shape.
    ///
    /// # Safety
    ///
    /// `ctl` must point into a published, mapped segment with at least `avail` readable
    /// bytes from `ctl`, 64-byte aligned; `payload` must be the segment payload of
    /// `payload_len` bytes. The mapping must outlive every use of the result.
    pub(crate) unsafe fn attach(
        ctl: *mut u8,
        avail: usize,
        payload: *mut u8,
        payload_len: u64,
        expect: Shape,
    ) -> Result<RawRing, String> {
        if avail < size_of::<RingHeader>() {
            return Err("the control block is too small for a queue".into());
        }
        // SAFETY: in bounds (checked), aligned (contract); every field is an atomic, valid
        // for any bit pattern.
        let hdr = unsafe { &*ctl.cast::<RingHeader>() };
        let info = &hdr.info.0;
        let format = info.format.load(Relaxed);
        if format != RING_FORMAT {
            return Err(format!("queue format word is {format:#x}, expected {RING_FORMAT:#x}"));
        }
        let flags = info.flags.load(Relaxed);
        if flags != 0 {
            return Err(format!("queue flags word is {flags:#x}, expected 0 (reserved)"));
        }
        let found = Shape {
            capacity: info.capacity.load(Relaxed),
            stride: info.stride.load(Relaxed),
            max_msg: info.max_msg.load(Relaxed),
            data_offset: info.data_offset.load(Relaxed),
        };
        if info.check.load(Relaxed) != found.check_word(format, flags) {
            return Err("the queue's fixed words fail their check word: a process overwrote them".into());
        }
        let fixed = expect.max_msg == expect.stride;
        // Byte rings: the stride is exactly what the creator derives from `max_msg`.
        let msg_ok = if fixed {
            found.max_msg == found.stride
        } else {
            usize::try_from(found.max_msg).ok().and_then(|m| byte_stride(m).ok()) == Some(found.stride)
        };
        if found.capacity != expect.capacity
            || found.stride != expect.stride
            || found.data_offset != expect.data_offset
            || !msg_ok
        {
            return Err(format!("queue words say {found:?}, the segment header implies {expect:?}"));
        }
        let cap = usize::try_from(found.capacity).map_err(|_| "capacity overflows".to_string())?;
        // The division first: `ring_len` of a huge count would wrap.
        if cap == 0 || cap > avail / size_of::<SlotMeta<RawMutex>>() || ring_len(cap) > avail {
            return Err(format!("{cap} slots do not fit the control block"));
        }
        let data_len = found.capacity.checked_mul(found.stride).and_then(|n| n.checked_add(found.data_offset));
        if data_len.is_none_or(|end| end > payload_len) {
            return Err("slot data lies outside the payload".into());
        }
        // SAFETY: the slots follow the header and fit in `avail` (checked above).
        let slots = unsafe { ctl.cast::<RingHeader>().add(1).cast::<SlotMeta<RawMutex>>() };
        // SAFETY: data_offset is inside the payload (checked above).
        let data = unsafe { payload.add(found.data_offset as usize) };
        Ok(RawRing { hdr: ctl.cast::<RingHeader>(), slots, data, shape: found })
    }

    /// The ring, borrowed for as long as the handle that owns the mapping.
    pub(crate) fn ring(&self) -> Ring<'_, RawMutex, ProcessHook> {
        // SAFETY: validated by `attach`; the mapping outlives `self` (attach's contract),
        // and all fields are atomics or robust mutexes, fine to share.
        unsafe {
            Ring {
                hdr: &*self.hdr,
                slots: std::slice::from_raw_parts(self.slots, self.shape.capacity as usize),
                hook: ProcessHook,
            }
        }
    }

    /// Start of slot `i`'s data (`i < capacity`, guaranteed by the ring).
    pub(crate) fn data(&self, i: usize) -> *mut u8 {
        self.data.wrapping_add(i * self.shape.stride as usize)
    }
}
