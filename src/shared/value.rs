//! `SharedValue<T>` (guarded, like Python's `Value` with its lock) and
//! `SharedAtomic<T>` (lock-free integer).

use std::ops::{Deref, DerefMut};

use super::array::{attach_claims, claimed_expect, claimed_layout, init_claims};
use super::claims::{ClaimError, Claims, Mode, SlotGuard};
use super::element::{AtomicElement, Element, type_info};
use crate::segment::kind::{Create, SegmentKind, debug_handle, segment_handle};
use crate::segment::{Expect, Kind, Layout, Segment, SegmentError};
use crate::sync::wait_for::wait_variants;
use crate::sys::Deadline;

const VALUE_SLOTS: usize = 16;

/// One `T` in shared memory behind a robust lock, like Python's `Value('d', 0.0)` used
/// with `get_lock()`: [`lock`](Self::lock) gives `&mut T` for a read-modify-write;
/// [`get`](Self::get) and [`set`](Self::set) copy under the lock. A holder that dies
/// releases the lock; the next locker proceeds.
///
/// ```
/// let v = shmkit::SharedValue::<f64>::create(None, 1.5)?;
/// *v.lock()? += 1.0;
/// assert_eq!(v.get()?, 2.5);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct SharedValue<T: Element> {
    seg: Segment,
    _t: std::marker::PhantomData<T>,
}

impl<T: Element> std::fmt::Debug for SharedValue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_handle(f, "SharedValue", &self.seg, T::TYPE_NAME).finish()
    }
}

impl<T: Element> SegmentKind for SharedValue<T> {
    type Error = SegmentError;

    fn expect() -> Expect {
        claimed_expect::<T>(Kind::Value)
    }

    fn attach(seg: Segment) -> Result<Self, SegmentError> {
        attach_claims(&seg)?;
        Ok(SharedValue { seg, _t: std::marker::PhantomData })
    }
}

impl<T: Element> Create<T> for SharedValue<T> {
    fn layout(_: &T) -> Result<Layout, SegmentError> {
        claimed_layout::<T>(Kind::Value, 1, VALUE_SLOTS)
    }

    unsafe fn init(seg: &Segment, init: T) -> Result<(), SegmentError> {
        // SAFETY: the caller's contract: `seg` is new, unpublished, laid out by `layout`.
        unsafe { init_claims(seg, VALUE_SLOTS, 1) }?;
        // SAFETY: the segment is not published yet, so nobody else accesses the payload,
        // which holds one aligned T.
        unsafe { seg.as_ptr().cast::<T>().write(init) };
        Ok(())
    }
}

segment_handle! {
    impl[T: Element] SharedValue<T>, "value", SegmentError, seg, (init: T) => init
}

impl<T: Element> SharedValue<T> {
    fn claims(&self) -> Result<Claims<'_>, ClaimError> {
        attach_claims(&self.seg).map_err(|e| ClaimError::Corrupt { reason: e.to_string() })
    }

    fn guard(&self, mode: Mode, wait: Option<Deadline>) -> Result<(SlotGuard<'_>, *mut T), ClaimError> {
        let slot = self.claims()?.claim(0..1, mode, wait)?;
        Ok((slot, self.seg.as_ptr().cast::<T>()))
    }

    fn make_guard(&self, wait: Option<Deadline>) -> Result<ValueGuard<'_, T>, ClaimError> {
        let (slot, ptr) = self.guard(Mode::Exclusive, wait)?;
        // SAFETY: the payload holds one T, aligned (validated header); the exclusive claim
        // excludes every other access in every process until the guard drops.
        let value = unsafe { &mut *ptr };
        Ok(ValueGuard { value, _slot: slot })
    }

    wait_variants! {
        /// Lock the value, waiting as long as it takes.
        pub fn lock(&self) -> Result<ValueGuard<'_, T>, ClaimError>;
        /// Lock the value if nobody holds it now.
        pub fn try_lock;
        /// Lock the value, giving up after `timeout`.
        pub fn lock_timeout;
        => make_guard
    }

    /// Copy the value out.
    pub fn get(&self) -> Result<T, ClaimError> {
        let (_slot, ptr) = self.guard(Mode::Shared, Some(Deadline::never()))?;
        // SAFETY: as in `make_guard`, with a shared claim excluding writers.
        Ok(unsafe { *ptr })
    }

    /// Store a new value.
    pub fn set(&self, v: T) -> Result<(), ClaimError> {
        *self.lock()? = v;
        Ok(())
    }

    /// Apply `f` under the lock and return its result.
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R, ClaimError> {
        let mut guard = self.lock()?;
        Ok(f(&mut guard))
    }
}

/// Exclusive access to a [`SharedValue`]; the lock is released on drop.
#[must_use = "the value's lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T> {
    value: &'a mut T,
    _slot: SlotGuard<'a>,
}

impl<T> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value
    }
}

impl<T> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value
    }
}

/// One atomic integer in shared memory: every access is atomic, so no lock is needed.
///
/// ```
/// use std::sync::atomic::Ordering;
/// let c = shmkit::SharedAtomic::<u64>::create(None, 0)?;
/// c.fetch_add(2, Ordering::Relaxed);
/// assert_eq!(c.load(Ordering::Relaxed), 2);
/// # Ok::<(), shmkit::SegmentError>(())
/// ```
pub struct SharedAtomic<T: AtomicElement> {
    seg: Segment,
    _t: std::marker::PhantomData<T>,
}

impl<T: AtomicElement> std::fmt::Debug for SharedAtomic<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_handle(f, "SharedAtomic", &self.seg, T::TYPE_NAME).finish()
    }
}

impl<T: AtomicElement> SegmentKind for SharedAtomic<T> {
    type Error = SegmentError;

    fn expect() -> Expect {
        Expect { kind: Some(Kind::Atomic), elem: Some(type_info::<T>()), min_control_len: 0 }
    }

    fn attach(seg: Segment) -> Result<Self, SegmentError> {
        Ok(SharedAtomic { seg, _t: std::marker::PhantomData })
    }
}

impl<T: AtomicElement> Create<T> for SharedAtomic<T> {
    fn layout(_: &T) -> Result<Layout, SegmentError> {
        Ok(Layout { kind: Kind::Atomic, elem: type_info::<T>(), elem_count: 1, control_len: 0, payload_align: 64 })
    }

    unsafe fn init(seg: &Segment, init: T) -> Result<(), SegmentError> {
        // SAFETY: unpublished segment (the caller's contract), payload holds one aligned T.
        unsafe { seg.as_ptr().cast::<T>().write(init) };
        Ok(())
    }
}

segment_handle! {
    impl[T: AtomicElement] SharedAtomic<T>, "atomic", SegmentError, seg, (init: T) => init
}

impl<T: AtomicElement> SharedAtomic<T> {
    /// The atomic itself (`&AtomicU64` for `u64`, …).
    pub fn atomic(&self) -> &T::Atomic {
        // SAFETY: the payload holds one T, aligned; T::Atomic has T's layout (AtomicElement
        // contract); segments of kind Atomic are only ever accessed atomically.
        unsafe { &*self.seg.as_ptr().cast::<T::Atomic>() }
    }
}

impl<T: AtomicElement> Deref for SharedAtomic<T> {
    type Target = T::Atomic;
    fn deref(&self) -> &T::Atomic {
        self.atomic()
    }
}
