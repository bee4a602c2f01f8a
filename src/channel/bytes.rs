//! `ByteQueue`: variable-size messages, one per slot, framed by a length word.

use std::time::Duration;

use super::error::{GetError, PutError};
use super::layout::{self, LEN_PREFIX, RawRing, Shape, byte_stride};
use super::ops::{PutStop, Wait};
use super::queue::{attach_ring, check_capacity, init_rings, ring_state};
use crate::segment::kind::{Create, SegmentKind, segment_handle};
use crate::segment::{Expect, Kind, Layout, Segment, SegmentError, SegmentOptions, TypeInfo};
use crate::sync::WaitPolicy;
use crate::sync::wait::Cadence;
use crate::sync::wait_for::{WaitFor, wait_variants};

/// Element type name of byte-queue segments.
pub(crate) const BYTES_TYPE: &str = "shmkit.bytes";

/// Copy `msg` into a slot (`p`: slot data, at least `LEN_PREFIX + msg.len()` bytes).
pub(crate) fn write_framed(p: *mut u8, msg: &[u8]) {
    // SAFETY: the caller's ring hands us a slot of `stride >= LEN_PREFIX + max_msg` bytes,
    // ours alone until published, 8-byte aligned (payload and stride are multiples of 64);
    // `msg.len() <= max_msg` was checked before the put.
    unsafe {
        p.cast::<u64>().write(msg.len() as u64);
        std::ptr::copy_nonoverlapping(msg.as_ptr(), p.add(LEN_PREFIX), msg.len());
    }
}

/// Look at a slot's message in place; `Err` when its length word is corrupt.
pub(crate) fn read_framed<R>(p: *const u8, max: usize, f: impl FnOnce(&[u8]) -> R) -> Result<R, GetError> {
    // SAFETY: the slot is ours until we release it (ring protocol), aligned as in
    // `write_framed`; the length comes from shared memory and is checked before use.
    let len = unsafe { p.cast::<u64>().read() };
    if len > max as u64 {
        return Err(GetError::Corrupt("a message's length word exceeds the slot size"));
    }
    // SAFETY: `len <= max_msg`, so the bytes lie inside the slot; nobody writes the slot
    // while we hold it, so the shared slice is not mutated during `f`.
    Ok(f(unsafe { std::slice::from_raw_parts(p.add(LEN_PREFIX), len as usize) }))
}

/// A bounded MPMC queue of byte messages of up to `max_message` bytes each, in shared
/// memory. Each message takes one slot (`capacity × max_message` bytes in all); a larger
/// message is refused with [`PutError::TooLarge`], never truncated.
///
/// ```
/// use shmkit::channel::ByteQueue;
/// let q = ByteQueue::create(None, 8, 1024)?;
/// let peer = ByteQueue::open(q.name().unwrap())?;
/// q.put(b"hello").unwrap();
/// q.put(&[0u8; 1000]).unwrap();
/// assert_eq!(peer.get().unwrap(), b"hello");
/// // Borrowed receive: look at the message in its slot, no copy.
/// assert_eq!(peer.get_with(|m| m.len()).unwrap(), 1000);
/// assert!(q.put(&[0u8; 1025]).is_err()); // too large: an error, not truncation
/// # Ok::<(), shmkit::SegmentError>(())
/// ```
pub struct ByteQueue {
    pub(super) seg: Segment,
    ring: RawRing,
    policy: Option<WaitPolicy>,
}

impl std::fmt::Debug for ByteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteQueue")
            .field("name", &self.seg.name())
            .field("capacity", &self.capacity())
            .field("max_message", &self.max_message())
            .field("len", &self.len())
            .finish()
    }
}

/// The layout of a byte-queue segment: `capacity` slots for messages of up to `max` bytes.
fn byte_layout(capacity: usize, max: usize) -> Result<(Layout, Shape), SegmentError> {
    check_capacity(capacity, 1)?;
    let stride = byte_stride(max)?;
    let shape = Shape { capacity: capacity as u64, stride, max_msg: max as u64, data_offset: 0 };
    let layout = Layout {
        kind: Kind::Queue,
        elem: TypeInfo { size: stride, align: 8, name: BYTES_TYPE.into() },
        elem_count: capacity as u64,
        control_len: layout::ring_len(capacity),
        payload_align: if stride >= 4096 { 4096 } else { 64 },
    };
    Ok((layout, shape))
}

/// `Err(SizeMismatch)` unless a queue opened by `open_or_create` takes messages of `max` bytes.
pub(crate) fn check_max_message(seg: &Segment, found: usize, max: usize) -> Result<(), SegmentError> {
    if found == max {
        return Ok(());
    }
    let name = seg.name().unwrap_or("").to_owned();
    Err(SegmentError::SizeMismatch { name, expected: max as u64, found: found as u64 })
}

impl SegmentKind for ByteQueue {
    type Error = SegmentError;

    fn expect() -> Expect {
        Expect { kind: Some(Kind::Queue), elem: None, min_control_len: layout::ring_len(1) }
    }

    fn attach(seg: Segment) -> Result<Self, SegmentError> {
        let Some(h) = seg.header() else {
            return Err(SegmentError::NotShmkit { name: seg.name().unwrap_or("").into() });
        };
        if h.elem.name != BYTES_TYPE || h.elem.align != 8 {
            let expected = TypeInfo { size: h.elem.size, align: 8, name: BYTES_TYPE.into() };
            let name = seg.name().unwrap_or("").to_owned();
            return Err(SegmentError::TypeMismatch { name, expected, found: h.elem.clone() });
        }
        let expect = Shape { capacity: h.elem_count, stride: h.elem.size, max_msg: u64::MAX, data_offset: 0 };
        let ring = attach_ring(&seg, 0, &[], expect)?;
        Ok(ByteQueue { seg, ring, policy: None })
    }
}

impl Create<(usize, usize)> for ByteQueue {
    fn layout(&(capacity, max): &(usize, usize)) -> Result<Layout, SegmentError> {
        Ok(byte_layout(capacity, max)?.0)
    }

    unsafe fn init(seg: &Segment, (capacity, max): (usize, usize)) -> Result<(), SegmentError> {
        let (_, shape) = byte_layout(capacity, max)?;
        // SAFETY: the caller's contract; the layout made room for this one ring.
        unsafe { init_rings(seg, 0, &[shape]) }
    }

    fn check_existing(handle: &Self, &(_, max): &(usize, usize)) -> Result<(), SegmentError> {
        check_max_message(&handle.seg, handle.max_message(), max)
    }
}

segment_handle! {
    impl[] ByteQueue, "byte queue", SegmentError, seg,
    (capacity: usize, max_message: usize) => (capacity, max_message)
}

impl ByteQueue {
    /// Create a named queue with explicit segment options.
    #[deprecated(since = "0.2.0", note = "use `ByteQueue::create_with`")]
    pub fn create_named_with(
        opts: &SegmentOptions,
        name: Option<&str>,
        capacity: usize,
        max_message: usize,
    ) -> Result<Self, SegmentError> {
        Self::create_with(opts, name, capacity, max_message)
    }

    wait_variants! {
        /// Put a copy of `msg`, waiting while the queue is full.
        pub fn put<'m>(&self, msg: &'m [u8]) -> Result<(), PutError<&'m [u8]>>;
        /// Put a copy of `msg` if there is room now.
        pub fn try_put;
        /// Put a copy of `msg`, waiting at most `timeout` for room.
        pub fn put_timeout;
        => put_wait
    }

    fn put_wait<'m>(&self, msg: &'m [u8], wait: Wait) -> Result<(), PutError<&'m [u8]>> {
        put_bytes(&self.ring, (self.wait_policy(), Cadence::Stream), wait, || false, msg).map_err(|e| e.into_error(msg))
    }

    wait_variants! {
        /// Take the oldest message, waiting while the queue is empty.
        pub fn get(&self) -> Result<Vec<u8>, GetError>;
        /// Take the oldest message if there is one now.
        pub fn try_get;
        /// Take the oldest message, waiting at most `timeout`.
        pub fn get_timeout;
        => get_vec_wait
    }

    fn get_vec_wait(&self, wait: Wait) -> Result<Vec<u8>, GetError> {
        self.get_with_wait(wait, <[u8]>::to_vec)?
    }

    /// Take the oldest message into `buf` (cleared first, its allocation reused); returns
    /// the message length.
    pub fn get_into(&self, buf: &mut Vec<u8>) -> Result<usize, GetError> {
        self.get_with_wait(Wait::forever(), |m| copy_into(buf, m))?
    }

    /// Borrowed receive: take the oldest message and run `f` on it *in its slot*, without
    /// copying; the slot is released when `f` returns. If `f` panics the message is lost
    /// (counted in [`abandoned`](Self::abandoned) when the slot is reused).
    pub fn get_with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, GetError> {
        self.get_with_wait(Wait::forever(), f)?
    }

    /// [`get_with`](Self::get_with) if a message is there now.
    pub fn try_get_with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, GetError> {
        self.get_with_wait(Wait::No, f)?
    }

    /// [`get_with`](Self::get_with), waiting at most `timeout`.
    pub fn get_with_timeout<R>(&self, timeout: Duration, f: impl FnOnce(&[u8]) -> R) -> Result<R, GetError> {
        self.get_with_wait(Wait::timeout(timeout), f)?
    }

    fn get_with_wait<R>(&self, wait: Wait, f: impl FnOnce(&[u8]) -> R) -> Result<Result<R, GetError>, GetError> {
        get_bytes(&self.ring, (self.wait_policy(), Cadence::Stream), wait, || false, GetError::Closed, f)
    }

    /// The largest message, in bytes.
    pub fn max_message(&self) -> usize {
        self.ring.shape.max_msg as usize
    }
}

ring_state! { impl[] ByteQueue }

/// Put a framed message on a byte ring (refusing one larger than its slots).
/// Replace `buf`'s contents with `msg` (its allocation reused); returns the length.
pub(crate) fn copy_into(buf: &mut Vec<u8>, msg: &[u8]) -> usize {
    buf.clear();
    buf.extend_from_slice(msg);
    msg.len()
}

pub(crate) fn put_bytes(
    ring: &RawRing,
    how: (WaitPolicy, Cadence),
    wait: Wait,
    gone: impl FnMut() -> bool,
    msg: &[u8],
) -> Result<(), PutStop> {
    let max = ring.shape.max_msg as usize;
    if msg.len() > max {
        return Err(PutStop::TooLarge { len: msg.len(), max });
    }
    ring.put(how, wait, gone, |p| write_framed(p, msg))
}

/// Get a framed message from a byte ring and run `f` on it in place.
pub(crate) fn get_bytes<R>(
    ring: &RawRing,
    how: (WaitPolicy, Cadence),
    wait: Wait,
    gone: impl FnMut() -> bool,
    closed: GetError,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<Result<R, GetError>, GetError> {
    let max = ring.shape.max_msg as usize;
    let mut f = Some(f);
    let r = ring.get(how, wait, gone, closed, |p| match f.take() {
        Some(f) => read_framed(p, max, f),
        None => Err(GetError::Corrupt("internal: message read twice")),
    })?;
    Ok(r)
}
