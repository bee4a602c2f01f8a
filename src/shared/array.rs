//! `SharedArray<T>`: a fixed-length array of `Element`s in a segment.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut, Range, RangeBounds};

use super::claims::{self, ClaimError, Claims, MAX_CLAIM_SLOTS, Mode, SlotGuard};
use super::element::{AtomicElement, Element, type_info};
use super::shape::{IntoShape, SHAPE_RECORD, Shape};
use crate::segment::kind::{self, Create, SegmentKind, debug_handle, segment_handle};
use crate::segment::{Expect, HeaderInfo, Kind, Layout, Segment, SegmentError, SegmentOptions, Target};
use crate::sync::wait_for::wait_variants;
use crate::sys::Deadline;

/// Default number of claim slots of an array: how many claims may be live at once.
pub const DEFAULT_CLAIM_SLOTS: usize = 128;

/// A fixed-length array of `T` in shared memory, like Python's `multiprocessing.Array`
/// or a numpy array over `SharedMemory`, but with sound access only:
///
/// - [`read`](Self::read) / [`write`](Self::write): the whole array, as `&[T]` / `&mut [T]`;
/// - [`claim`](Self::claim) / [`claim_mut`](Self::claim_mut): a range, so that each process
///   owns a disjoint `&mut [T]` while others hold other ranges (an overlapping claim waits;
///   `try_*` refuses it);
/// - [`atomics`](Self::atomics): `&[AtomicU64]` (etc.) for integer element types;
/// - [`copy_to_vec`](Self::copy_to_vec), [`copy_from_slice`](Self::copy_from_slice): copy out, copy in.
///
/// Claims are robust: a claim whose process died is freed by the next claimant.
///
/// An array has a [`Shape`] (C order, up to [`MAX_DIMS`](super::MAX_DIMS) dimensions),
/// recorded in the segment and read back on every open; element ranges index the flat
/// array, and [`Rows`] names a band of rows along the first axis for every claim method. With feature `ndarray`, claims are
/// `ArrayView`s of their true shape.
///
/// ```
/// use shmkit::{Rows, SharedArray};
/// let grid = SharedArray::<f64>::create(None, [4, 6])?;   // 4 rows of 6
/// assert_eq!((grid.shape().dims(), grid.len()), (&[4, 6][..], 24));
/// let band = grid.claim_mut(Rows(1..3))?;                  // rows 1 and 2: elements 6..18
/// assert_eq!((band.range(), band.shape().dims()), (6..18, &[2, 6][..]));
/// # Ok::<(), shmkit::Error>(())
/// ```
///
/// ```
/// use shmkit::SharedArray;
/// let a = SharedArray::<f64>::create(None, 1000)?;
/// {
///     let mut left = a.claim_mut(0..500)?;   // this process (or thread) owns 0..500
///     let mut right = a.try_claim_mut(500..1000)?;
///     left.fill(1.0);
///     right.fill(2.0);
///     assert!(a.try_claim_mut(400..600).is_err()); // overlaps a live claim
/// }
/// let sum: f64 = a.read()?.iter().sum();
/// assert_eq!(sum, 1500.0);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct SharedArray<T: Element> {
    seg: Segment,
    shape: Shape,
    _t: PhantomData<T>,
}

impl<T: Element> std::fmt::Debug for SharedArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_handle(f, "SharedArray", &self.seg, T::TYPE_NAME).field("shape", &self.shape).finish()
    }
}

/// The layout of a segment of `kind` holding `len` elements `T` behind a claim table of
/// `slots` slots (0 means 1; more than [`MAX_CLAIM_SLOTS`] is `TooLarge`).
pub(crate) fn claimed_layout<T: Element>(kind: Kind, len: usize, slots: usize) -> Result<Layout, SegmentError> {
    // Bounded before any size is computed from it: `control_len` of a huge count would wrap.
    if slots > MAX_CLAIM_SLOTS {
        return Err(SegmentError::TooLarge {
            requested: slots as u64,
            capacity: MAX_CLAIM_SLOTS as u64,
            where_: "the claim table (slots, see MAX_CLAIM_SLOTS)",
        });
    }
    Ok(Layout {
        kind,
        elem: type_info::<T>(),
        elem_count: len as u64,
        control_len: claims::control_len(slots.max(1)),
        payload_align: if len.saturating_mul(std::mem::size_of::<T>()) >= 1 << 20 { 4096 } else { 64 },
    })
}

/// Set up the claim table of a new segment laid out by [`claimed_layout`].
///
/// # Safety
///
/// `seg` was made from `claimed_layout::<_>(_, len, slots)` and is not yet published.
pub(crate) unsafe fn init_claims(seg: &Segment, slots: usize, len: usize) -> Result<(), SegmentError> {
    // SAFETY: the control block is `control_len(slots)` bytes (the caller's layout), aligned
    // (offset 128 of a page-aligned mapping), zero-filled and unpublished: nobody else can
    // see it yet.
    unsafe { Claims::init(seg.control_ptr(), slots.max(1), len as u64) }
        .map_err(|reason| SegmentError::Corrupt { name: seg.name().unwrap_or("").to_owned(), reason })
}

/// What an opener of a claimed segment of `kind` holding `T` expects.
pub(crate) fn claimed_expect<T: Element>(kind: Kind) -> Expect {
    Expect { kind: Some(kind), elem: Some(type_info::<T>()), min_control_len: claims::control_len(1) }
}

/// Whether the segment stores a shape record before its payload (arrays of format 3 on).
fn has_shape_record(h: &HeaderInfo) -> bool {
    h.kind == Kind::Array && h.version >= 3
}

/// The claim table of a published segment, validated.
pub(crate) fn attach_claims(seg: &Segment) -> Result<Claims<'_>, SegmentError> {
    let h = seg.header().ok_or_else(|| SegmentError::NotShmkit { name: seg.name().unwrap_or("").to_owned() })?;
    let record = if has_shape_record(h) { SHAPE_RECORD } else { 0 };
    let avail =
        (h.payload_offset as usize - crate::segment::header::HEADER_SIZE).checked_sub(record).ok_or_else(|| {
            SegmentError::Corrupt {
                name: seg.name().unwrap_or("").to_owned(),
                reason: "no room for the shape record".into(),
            }
        })?;
    // SAFETY: the control block lies between the header and the payload of a published
    // segment whose mapping lives as long as `seg`.
    unsafe { Claims::attach(seg.control_ptr(), avail, h.elem_count) }
        .map_err(|reason| SegmentError::Corrupt { name: seg.name().unwrap_or("").to_owned(), reason })
}

/// The shape a published array segment records (`[elem_count]` for format 2), validated.
fn stored_shape(seg: &Segment) -> Result<Shape, SegmentError> {
    let name = || seg.name().unwrap_or("").to_owned();
    let h = seg.header().ok_or_else(|| SegmentError::NotShmkit { name: name() })?;
    if !has_shape_record(h) {
        return Shape::new(&[h.elem_count as usize]);
    }
    // SAFETY: `attach_claims` checked that the 64 bytes before the payload lie after the
    // claim table, inside the mapping; the payload offset is a multiple of 64, so they are
    // 8-aligned; the record is only ever accessed atomically.
    let words = unsafe { Shape::load(seg.as_ptr().wrapping_sub(SHAPE_RECORD)) };
    Shape::from_record(&words, h.elem_count).map_err(|reason| SegmentError::Corrupt { name: name(), reason })
}

/// What a new array is made of: its shape (checked by `layout`) and its number of claim
/// slots.
pub(crate) struct ArrayArgs {
    shape: Result<Shape, SegmentError>,
    slots: usize,
}

impl ArrayArgs {
    fn new(shape: impl IntoShape, slots: usize) -> Self {
        ArrayArgs { shape: shape.into_shape(), slots }
    }

    fn shape(&self) -> Result<Shape, SegmentError> {
        match &self.shape {
            Ok(s) => Ok(*s),
            Err(SegmentError::BadShape { shape, reason }) => {
                Err(SegmentError::BadShape { shape: shape.clone(), reason })
            }
            Err(SegmentError::TooLarge { requested, capacity, where_ }) => {
                Err(SegmentError::TooLarge { requested: *requested, capacity: *capacity, where_ })
            }
            Err(_) => Err(SegmentError::ZeroLength),
        }
    }
}

impl<T: Element> SegmentKind for SharedArray<T> {
    type Error = SegmentError;

    fn expect() -> Expect {
        claimed_expect::<T>(Kind::Array)
    }

    fn attach(seg: Segment) -> Result<Self, SegmentError> {
        attach_claims(&seg)?;
        let shape = stored_shape(&seg)?;
        Ok(SharedArray { seg, shape, _t: PhantomData })
    }
}

impl<T: Element> Create<ArrayArgs> for SharedArray<T> {
    fn layout(args: &ArrayArgs) -> Result<Layout, SegmentError> {
        let mut layout = claimed_layout::<T>(Kind::Array, args.shape()?.len(), args.slots)?;
        layout.control_len += SHAPE_RECORD; // the record ends where the payload starts
        Ok(layout)
    }

    unsafe fn init(seg: &Segment, args: ArrayArgs) -> Result<(), SegmentError> {
        let shape = args.shape()?;
        // SAFETY: the control block was laid out with SHAPE_RECORD bytes to spare, so the
        // 64 bytes before the (64-aligned) payload follow the claim table; the segment is
        // unpublished (the caller's contract).
        unsafe { shape.store(seg.as_ptr().wrapping_sub(SHAPE_RECORD)) };
        // SAFETY: the caller's contract: `seg` is new, unpublished, laid out by `layout`.
        unsafe { init_claims(seg, args.slots, shape.len()) }
    }

    fn check_existing(handle: &Self, args: &ArrayArgs) -> Result<(), SegmentError> {
        handle.expect_shape(args.shape()?)
    }
}

segment_handle! {
    @common impl[T: Element] SharedArray<T>, "array", SegmentError, seg,
    (shape: impl IntoShape) => ArrayArgs::new(shape, DEFAULT_CLAIM_SLOTS)
}

impl<T: Element> SharedArray<T> {
    /// As [`create`](Self::create), with explicit options and number of claim slots (1 to
    /// [`MAX_CLAIM_SLOTS`]; 0 means 1). More slots than that, or more elements than the
    /// address space holds, give [`SegmentError::TooLarge`].
    pub fn create_with(
        opts: &SegmentOptions,
        name: Option<&str>,
        shape: impl IntoShape,
        slots: usize,
    ) -> Result<Self, SegmentError> {
        kind::create(opts, Target::Named(name), ArrayArgs::new(shape, slots))
    }

    /// The array's shape, as recorded in its segment (or as [`reshape`](Self::reshape)d).
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// `Ok` if the array has `shape`, else [`SegmentError::ShapeMismatch`]: the check an
    /// opener that knows its grid makes, as `open` checks the element type.
    pub fn expect_shape(&self, shape: impl IntoShape) -> Result<(), SegmentError> {
        let want = shape.into_shape()?;
        if want == self.shape {
            return Ok(());
        }
        let name = self.seg.name().unwrap_or("").to_owned();
        Err(SegmentError::ShapeMismatch { name, expected: want.to_vec(), found: self.shape.to_vec() })
    }

    /// This handle with another shape of the same number of elements (numpy's `reshape`:
    /// the data stays in place). Only this handle changes: other handles, and openers, see
    /// the shape recorded at creation. Another element count is
    /// [`SegmentError::SizeMismatch`].
    pub fn reshape(mut self, shape: impl IntoShape) -> Result<Self, SegmentError> {
        let new = shape.into_shape()?;
        if new.len() != self.shape.len() {
            let name = self.seg.name().unwrap_or("").to_owned();
            return Err(SegmentError::SizeMismatch { name, expected: new.len() as u64, found: self.len() as u64 });
        }
        self.shape = new;
        Ok(self)
    }

    fn claims(&self) -> Result<Claims<'_>, ClaimError> {
        // Re-validated on every use: the table's shape lives in shared memory, where a
        // misbehaving peer could change it after we opened the segment.
        attach_claims(&self.seg).map_err(|e| ClaimError::Corrupt { reason: e.to_string() })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.len()
    }

    /// Whether the array has no elements (never: arrays hold at least one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shape of the elements `r`: a band of rows when `r` starts and ends on row
    /// boundaries, else flat.
    fn shape_of(&self, r: &Range<usize>) -> Shape {
        let row_len = self.shape.row_len();
        if r.start.is_multiple_of(row_len) && r.end.is_multiple_of(row_len) {
            self.shape.with_rows(r.len() / row_len)
        } else {
            Shape::flat(r.len())
        }
    }

    fn grant(
        &self,
        range: impl ClaimRange,
        mode: Mode,
        wait: Option<Deadline>,
    ) -> Result<(Range<usize>, SlotGuard<'_>), ClaimError> {
        let r = range.elements(&self.shape, self.len())?;
        let slot = self.claims()?.claim(r.clone(), mode, wait)?;
        Ok((r, slot))
    }

    fn elems(&self, r: &Range<usize>) -> *mut T {
        self.seg.as_ptr().cast::<T>().wrapping_add(r.start)
    }

    fn shared(&self, range: impl ClaimRange, wait: Option<Deadline>) -> Result<Claim<'_, T>, ClaimError> {
        let (r, slot) = self.grant(range, Mode::Shared, wait)?;
        // SAFETY: the range is in bounds of the payload (checked by `bounds`), the payload is
        // aligned for T (header validated), T is Pod, and the live shared claim excludes every
        // writer in every process until `slot` drops with the returned guard.
        let data = unsafe { std::slice::from_raw_parts(self.elems(&r), r.len()) };
        Ok(Claim { data, shape: self.shape_of(&r), range: r, _slot: slot })
    }

    fn exclusive(&self, range: impl ClaimRange, wait: Option<Deadline>) -> Result<ClaimMut<'_, T>, ClaimError> {
        let (r, slot) = self.grant(range, Mode::Exclusive, wait)?;
        // SAFETY: as in `shared`; the exclusive claim excludes every other reader and writer
        // of any overlapping element in every process until the guard drops.
        let data = unsafe { std::slice::from_raw_parts_mut(self.elems(&r), r.len()) };
        Ok(ClaimMut { data, shape: self.shape_of(&r), range: r, _slot: slot })
    }

    /// Read access to the whole array, waiting for writers to finish.
    pub fn read(&self) -> Result<Claim<'_, T>, ClaimError> {
        self.shared(.., Some(Deadline::never()))
    }

    /// Write access to the whole array, waiting for every other claim to end.
    pub fn write(&self) -> Result<ClaimMut<'_, T>, ClaimError> {
        self.exclusive(.., Some(Deadline::never()))
    }

    wait_variants! {
        /// A shared (read-only) claim on `range` — element indices (`2..10`, `..`) or a band
        /// of rows along the first axis ([`Rows`]), whose claim has the shape
        /// `[rows, dims[1..]]` — waiting while an overlapping writer holds it.
        pub fn claim(&self, range: impl ClaimRange) -> Result<Claim<'_, T>, ClaimError>;
        /// Like [`claim`](Self::claim) but refuses at once on conflict.
        pub fn try_claim;
        /// Like [`claim`](Self::claim) but gives up after `timeout`.
        pub fn claim_timeout;
        => shared
    }

    wait_variants! {
        /// An exclusive claim on `range` (`&mut [T]`; element indices or [`Rows`]), waiting
        /// while any overlapping claim lives.
        pub fn claim_mut(&self, range: impl ClaimRange) -> Result<ClaimMut<'_, T>, ClaimError>;
        /// Like [`claim_mut`](Self::claim_mut) but refuses at once on conflict.
        pub fn try_claim_mut;
        /// Like [`claim_mut`](Self::claim_mut) but gives up after `timeout`.
        pub fn claim_mut_timeout;
        => exclusive
    }

    /// `(slots in use, slot capacity)` of the claim table, for inspection tools. A claim
    /// whose holder's process has ended does not count (the next claimant that needs its
    /// slot reclaims it); one abandoned by a thread of a live process, or held by a killed
    /// process that is still exiting, does.
    pub fn claim_slots(&self) -> Result<(usize, usize), ClaimError> {
        let c = self.claims()?;
        Ok((c.in_use(), c.capacity()))
    }

    /// Copy the whole array out.
    pub fn copy_to_vec(&self) -> Result<Vec<T>, ClaimError> {
        Ok(self.read()?.to_vec())
    }

    /// Copy `dst.len()` elements starting at `offset` out.
    pub fn copy_to_slice(&self, offset: usize, dst: &mut [T]) -> Result<(), ClaimError> {
        let src = self.claim(offset..offset.saturating_add(dst.len()))?;
        dst.copy_from_slice(&src);
        Ok(())
    }

    /// Copy `src` in, starting at `offset`.
    pub fn copy_from_slice(&self, offset: usize, src: &[T]) -> Result<(), ClaimError> {
        let mut dst = self.claim_mut(offset..offset.saturating_add(src.len()))?;
        dst.copy_from_slice(src);
        Ok(())
    }
}

impl<T: AtomicElement> SharedArray<T> {
    /// An atomic view of `range` (`&[AtomicU64]` for `u64`, …). Atomic claims coexist with
    /// each other and exclude plain readers and writers of the same elements.
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// let a = shmkit::SharedArray::<u64>::anonymous(8)?;
    /// let view = a.atomics(..)?;
    /// view[3].fetch_add(5, Ordering::Relaxed);
    /// assert_eq!(view[3].load(Ordering::Relaxed), 5);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn atomics(&self, range: impl ClaimRange) -> Result<AtomicClaim<'_, T::Atomic>, ClaimError> {
        let (r, slot) = self.grant(range, Mode::Atomic, Some(Deadline::never()))?;
        // SAFETY: in bounds and aligned as in `shared`; `T::Atomic` has T's layout
        // (AtomicElement contract); the atomic claim excludes every non-atomic access to these
        // elements in every process while it lives.
        let data = unsafe { std::slice::from_raw_parts(self.elems(&r).cast::<T::Atomic>(), r.len()) };
        Ok(AtomicClaim { data, range: r, _slot: slot })
    }
}

/// What a claim covers: a range of element indices (`2..10`, `..=7`, `..`), or a band of rows
/// along the first axis ([`Rows`]).
///
/// Sealed: the claim methods turn its answer into a slice of shared memory, so only shmkit's
/// own bounds-checked implementations exist.
///
/// ```compile_fail
/// struct Everything;
/// impl shmkit::shared::ClaimRange for Everything {
///     fn elements(self, _: &shmkit::shared::Shape, _: usize) -> Result<std::ops::Range<usize>, shmkit::ClaimError> {
///         Ok(0..usize::MAX)
///     }
/// }
/// ```
pub trait ClaimRange: sealed::Sealed {
    /// The element indices, checked against the array's `shape` (`len` elements).
    #[doc(hidden)]
    fn elements(self, shape: &Shape, len: usize) -> Result<Range<usize>, ClaimError>;
}

mod sealed {
    /// Keeps [`ClaimRange`](super::ClaimRange) to this crate's implementations.
    pub trait Sealed {}
    impl<R: std::ops::RangeBounds<usize>> Sealed for R {}
    impl<R: std::ops::RangeBounds<usize>> Sealed for super::Rows<R> {}
}

impl<R: RangeBounds<usize>> ClaimRange for R {
    fn elements(self, _shape: &Shape, len: usize) -> Result<Range<usize>, ClaimError> {
        let Range { start, end } = rows_of(self, len);
        if start >= end || end > len {
            return Err(ClaimError::OutOfBounds { start, end, len });
        }
        Ok(start..end)
    }
}

/// A band of rows `[r0, r1)` along an array's first axis (all of every other axis), for the
/// claim methods: the claim's [`shape`](Claim::shape) is `[r1 - r0, dims[1..]]`.
///
/// ```
/// use shmkit::shared::Rows;
/// let grid = shmkit::SharedArray::<f64>::anonymous([4, 3])?;
/// let band = grid.claim_mut(Rows(1..3))?;
/// assert_eq!((band.len(), band.shape().dims()), (6, &[2, 3][..]));
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rows<R>(pub R);

impl<R: RangeBounds<usize>> ClaimRange for Rows<R> {
    fn elements(self, shape: &Shape, len: usize) -> Result<Range<usize>, ClaimError> {
        let r = rows_of(self.0, shape.rows());
        let row_len = shape.row_len();
        if r.start >= r.end || r.end > shape.rows() {
            let (start, end) = (r.start.saturating_mul(row_len), r.end.saturating_mul(row_len));
            return Err(ClaimError::OutOfBounds { start, end, len });
        }
        Ok(r.start * row_len..r.end * row_len)
    }
}

/// A live shared claim: read-only access to a range. Dropping it releases the claim.
#[must_use = "the shared claim on the range is released as soon as it is dropped"]
pub struct Claim<'a, T> {
    data: &'a [T],
    shape: Shape,
    range: Range<usize>,
    _slot: SlotGuard<'a>,
}

/// A live exclusive claim: `&mut` access to a range. Dropping it releases the claim.
#[must_use = "the exclusive claim on the range is released as soon as it is dropped"]
pub struct ClaimMut<'a, T> {
    data: &'a mut [T],
    shape: Shape,
    range: Range<usize>,
    _slot: SlotGuard<'a>,
}

/// A live atomic claim: `&[AtomicX]` over a range. Dropping it releases the claim.
#[must_use = "the atomic claim on the range is released as soon as it is dropped"]
pub struct AtomicClaim<'a, A> {
    data: &'a [A],
    range: Range<usize>,
    _slot: SlotGuard<'a>,
}

macro_rules! claim_common {
    ($($ty:ident),*) => {$(
        impl<T> $ty<'_, T> {
            /// The element range this claim covers.
            pub fn range(&self) -> Range<usize> {
                self.range.clone()
            }
        }
        impl<T> Deref for $ty<'_, T> {
            type Target = [T];
            fn deref(&self) -> &[T] {
                self.data
            }
        }
    )*};
}
claim_common!(Claim, ClaimMut, AtomicClaim);

macro_rules! claim_shape {
    ($($ty:ident),*) => {$(
        impl<T> $ty<'_, T> {
            /// The shape of the claimed elements: `[rows, dims[1..]]` when the range starts
            /// and ends on row boundaries (a band of rows, or the whole array), else `[len]`.
            pub fn shape(&self) -> Shape {
                self.shape
            }
        }
    )*};
}
claim_shape!(Claim, ClaimMut);

/// `rows` as a plain range of indices below `n` (unbounded ends filled in; not checked).
pub(crate) fn rows_of(rows: impl RangeBounds<usize>, n: usize) -> Range<usize> {
    use std::ops::Bound::*;
    let start = match rows.start_bound() {
        Included(&s) => s,
        Excluded(&s) => s.saturating_add(1),
        Unbounded => 0,
    };
    let end = match rows.end_bound() {
        Included(&e) => e.saturating_add(1),
        Excluded(&e) => e,
        Unbounded => n,
    };
    start..end
}

impl<T> DerefMut for ClaimMut<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.data
    }
}
