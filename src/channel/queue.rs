//! `Queue<T>`: a bounded MPMC queue of fixed-size `Pod` messages in a segment.

use std::marker::PhantomData;
use std::time::Duration;

use super::error::{GetError, PutError};
use super::layout::{self, RawRing, Shape};
use super::ops::Wait;
use crate::segment::kind::{Create, SegmentKind, debug_handle, segment_handle};
use crate::segment::{Expect, Kind, Layout, Segment, SegmentError, SegmentOptions, header::HEADER_SIZE};
use crate::shared::{Element, type_info};
use crate::sync::WaitPolicy;
use crate::sync::wait::Cadence;
use crate::sync::wait_for::WaitFor;

/// A bounded multi-producer multi-consumer queue of `T` in shared memory, like Python's
/// `multiprocessing.Queue(maxsize)` but without pickling or a feeder thread: each message
/// is copied once into a slot and once out.
///
/// Named queues connect unrelated processes ([`create`](Self::create) /
/// [`open`](Self::open), which checks the element type); anonymous ones are inherited by
/// forked children. A process killed inside `put` or `get` neither corrupts the queue nor
/// blocks the others: its slot is recovered (see the [module docs](super) for the protocol).
///
/// ```
/// use shmkit::channel::{GetError, Queue};
/// let q = Queue::<u64>::create(None, 16)?;
/// let peer = Queue::<u64>::open(q.name().unwrap())?; // any process, by name
/// q.put(7).unwrap();
/// assert_eq!(peer.get(), Ok(7));
/// assert!(Queue::<f32>::open(q.name().unwrap()).is_err()); // wrong element type
/// q.close();
/// assert_eq!(peer.get(), Err(GetError::Closed));
/// # Ok::<(), shmkit::SegmentError>(())
/// ```
pub struct Queue<T: Element> {
    seg: Segment,
    ring: RawRing,
    policy: Option<WaitPolicy>,
    _t: PhantomData<T>,
}

impl<T: Element> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_handle(f, "Queue", &self.seg, T::TYPE_NAME)
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}

/// The shape of a ring of `capacity` fixed-size slots of `size` bytes.
pub(crate) fn fixed_shape(capacity: u64, size: u64) -> Shape {
    Shape { capacity, stride: size, max_msg: size, data_offset: 0 }
}

/// Reject capacities whose control block would not fit the address space.
pub(crate) fn check_capacity(capacity: usize, rings: usize) -> Result<(), SegmentError> {
    if capacity == 0 {
        return Err(SegmentError::ZeroLength);
    }
    let max = (isize::MAX as usize / 2) / layout::ring_len(1) / rings;
    if capacity > max {
        return Err(SegmentError::TooLarge {
            requested: capacity as u64,
            capacity: max as u64,
            where_: "the queue's slot table (slots)",
        });
    }
    Ok(())
}

/// Initialise the rings of `shapes` back to back in the control block of a new segment,
/// after `skip` zero bytes.
///
/// # Safety
///
/// `seg` is new and unpublished, and its control block holds `skip` bytes plus
/// `ring_len(capacity)` bytes per ring.
pub(crate) unsafe fn init_rings(seg: &Segment, skip: usize, shapes: &[Shape]) -> Result<(), SegmentError> {
    let mut ctl = seg.control_ptr().wrapping_add(skip);
    for shape in shapes {
        // SAFETY: the control block holds `ring_len(capacity)` bytes per ring (the caller's
        // layout), 64-byte aligned (offset 128 of a page-aligned mapping, `skip` and
        // ring_len multiples of 64), zero-filled and unpublished.
        unsafe { layout::init(ctl, *shape) }
            .map_err(|e| SegmentError::io("pthread_mutex_init", seg.name().unwrap_or(""), std::io::Error::other(e)))?;
        ctl = ctl.wrapping_add(layout::ring_len(shape.capacity as usize));
    }
    Ok(())
}

/// Validate the ring after `skip` bytes and the rings of `shapes_before` in a published segment.
pub(crate) fn attach_ring(
    seg: &Segment,
    skip: usize,
    shapes_before: &[Shape],
    expect: Shape,
) -> Result<RawRing, SegmentError> {
    let corrupt = |reason: String| SegmentError::Corrupt { name: seg.name().unwrap_or("").to_owned(), reason };
    let h = seg.header().ok_or_else(|| SegmentError::NotShmkit { name: seg.name().unwrap_or("").to_owned() })?;
    let avail = (h.payload_offset as usize).saturating_sub(HEADER_SIZE);
    let before: usize = skip + shapes_before.iter().map(|s| layout::ring_len(s.capacity as usize)).sum::<usize>();
    if before > avail {
        return Err(corrupt("the control block is too small for the queue's rings".into()));
    }
    // SAFETY: `before <= avail` keeps the pointer inside the control block of a published
    // segment that `seg` keeps mapped; the block starts 64-byte aligned and every ring
    // length is a multiple of 64.
    unsafe {
        RawRing::attach(seg.control_ptr().add(before), avail - before, seg.as_ptr(), h.payload_len, expect)
            .map_err(corrupt)
    }
}

/// The state accessors every ring-backed queue shares (`close`, `is_closed`, `len`,
/// `is_empty`, `capacity`, `abandoned`, and the wait-policy knob), for a type with
/// `ring: RawRing` and `policy: Option<WaitPolicy>` fields.
macro_rules! ring_state {
    (impl[$($gen:tt)*] $ty:ty) => {
        impl<$($gen)*> $ty {
            /// Close the queue: puts fail with `Closed` from now on (the value comes back); gets
            /// return the messages already in it, then `Closed`. Every parked thread wakes.
            /// Returns whether this call closed it.
            pub fn close(&self) -> bool {
                let ring = self.ring.ring();
                let first = ring.close();
                $crate::channel::park::wake_all(&ring.hdr.consumers.0);
                $crate::channel::park::wake_all(&ring.hdr.producers.0);
                first
            }

            /// Whether the queue is closed.
            pub fn is_closed(&self) -> bool {
                self.ring.ring().is_closed()
            }

            /// Messages in the queue now (a snapshot: other processes keep going).
            pub fn len(&self) -> usize {
                self.ring.ring().len()
            }

            /// Whether the queue holds no message now.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// The most messages the queue holds.
            pub fn capacity(&self) -> usize {
                self.ring.shape.capacity as usize
            }

            /// Messages lost since creation because a process died inside `put` or `get`.
            pub fn abandoned(&self) -> u64 {
                self.ring.ring().abandoned()
            }
        }
        $crate::channel::park::policy_knob! { impl[$($gen)*] $ty }
    };
}
pub(super) use ring_state;

impl<T: Element> SegmentKind for Queue<T> {
    type Error = SegmentError;

    fn expect() -> Expect {
        Expect { kind: Some(Kind::Queue), elem: Some(type_info::<T>()), min_control_len: layout::ring_len(1) }
    }

    fn attach(seg: Segment) -> Result<Self, SegmentError> {
        let count = seg.header().map_or(0, |h| h.elem_count);
        let ring = attach_ring(&seg, 0, &[], fixed_shape(count, std::mem::size_of::<T>() as u64))?;
        Ok(Queue { seg, ring, policy: None, _t: PhantomData })
    }
}

impl<T: Element> Create<usize> for Queue<T> {
    fn layout(&capacity: &usize) -> Result<Layout, SegmentError> {
        check_capacity(capacity, 1)?;
        Ok(Layout {
            kind: Kind::Queue,
            elem: type_info::<T>(),
            elem_count: capacity as u64,
            control_len: layout::ring_len(capacity),
            payload_align: 64,
        })
    }

    unsafe fn init(seg: &Segment, capacity: usize) -> Result<(), SegmentError> {
        let shape = fixed_shape(capacity as u64, std::mem::size_of::<T>() as u64);
        // SAFETY: the caller's contract; `layout` made room for one ring of `capacity`.
        unsafe { init_rings(seg, 0, &[shape]) }
    }
}

segment_handle! {
    impl[T: Element] Queue<T>, "queue", SegmentError, seg, (capacity: usize) => capacity
}

impl<T: Element> Queue<T> {
    /// Create with explicit segment options.
    #[deprecated(since = "0.2.0", note = "use `Queue::create_with`")]
    pub fn create_named_with(opts: &SegmentOptions, name: Option<&str>, capacity: usize) -> Result<Self, SegmentError> {
        Self::create_with(opts, name, capacity)
    }

    /// Put `value`, waiting while the queue is full. Fails only when it is closed.
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        self.put_wait(value, Wait::forever())
    }

    /// Put `value` if there is room now.
    pub fn try_put(&self, value: T) -> Result<(), PutError<T>> {
        self.put_wait(value, Wait::No)
    }

    /// Put `value`, waiting at most `timeout` for room.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmkit::channel::{PutError, Queue};
    /// let q = Queue::<u8>::anonymous(1)?;
    /// q.put(1).unwrap();
    /// assert!(matches!(q.put_timeout(2, Duration::from_millis(5)), Err(PutError::Timeout(2))));
    /// # Ok::<(), shmkit::SegmentError>(())
    /// ```
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.put_wait(value, Wait::timeout(timeout))
    }

    fn put_wait(&self, value: T, wait: Wait) -> Result<(), PutError<T>> {
        let write = |p: *mut u8| {
            // SAFETY: the ring hands us slot data of `stride = size_of::<T>()` bytes that no
            // one else touches until we publish it; the payload is aligned for T (header
            // validation) and the stride is a multiple of T's alignment.
            unsafe { p.cast::<T>().write(value) }
        };
        self.ring.put((self.wait_policy(), Cadence::Stream), wait, || false, write).map_err(|e| e.into_error(value))
    }

    /// Take the oldest message, waiting while the queue is empty. Fails with
    /// [`GetError::Closed`] once the queue is closed and drained.
    pub fn get(&self) -> Result<T, GetError> {
        self.get_wait(Wait::forever())
    }

    /// Take the oldest message if there is one now.
    pub fn try_get(&self) -> Result<T, GetError> {
        self.get_wait(Wait::No)
    }

    /// Take the oldest message, waiting at most `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        self.get_wait(Wait::timeout(timeout))
    }

    fn get_wait(&self, wait: Wait) -> Result<T, GetError> {
        let read = |p: *const u8| {
            // SAFETY: as in `put_wait`: the slot is ours until we release it, aligned, and
            // holds a T (any bit pattern is a valid T: Pod).
            unsafe { p.cast::<T>().read() }
        };
        self.ring.get((self.wait_policy(), Cadence::Stream), wait, || false, GetError::Closed, read)
    }
}

ring_state! { impl[T: Element] Queue<T> }
