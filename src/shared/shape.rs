//! The shape of a [`SharedArray`](super::SharedArray): up to [`MAX_DIMS`] dimensions in C
//! (row-major) order, and the 64-byte record that stores it in a segment.
//!
//! ```text
//! shape record (format version 3, arrays only): the 64 bytes right before the payload
//!   word 0     ndim (1 ..= MAX_DIMS)
//!   word 1..=7 dims[0..ndim], then 0
//! ```
//!
//! The record is written before the segment is published and read once per open, word by
//! word with atomic loads, then validated ([`Shape::from_record`]): `ndim` in range, every
//! dimension non-zero, the unused words zero, and the product equal to the header's element
//! count. Segments of format version 2 have no record: their shape is `[elem_count]`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::segment::SegmentError;

/// Most dimensions a [`Shape`] holds.
pub const MAX_DIMS: usize = 7;

/// Bytes of the shape record stored before an array's payload.
pub(crate) const SHAPE_RECORD: usize = 64;

/// The dimensions of a shared array, C order (the last index varies fastest), 1 to
/// [`MAX_DIMS`] of them, none zero. `Copy`, so claims and task records carry it freely.
///
/// ```
/// use shmkit::shared::Shape;
/// let s = Shape::new(&[3, 4])?;
/// assert_eq!((s.dims(), s.len(), s.row_len()), (&[3, 4][..], 12, 4));
/// # Ok::<(), shmkit::SegmentError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    ndim: u8,
    dims: [usize; MAX_DIMS],
}

impl Shape {
    /// A shape from its dimensions: none may be zero ([`SegmentError::ZeroLength`]), at most
    /// [`MAX_DIMS`] of them ([`SegmentError::BadShape`]), and their product must not
    /// overflow ([`SegmentError::TooLarge`]; so is an array larger than the address space,
    /// when it is laid out).
    pub fn new(dims: &[usize]) -> Result<Shape, SegmentError> {
        let bad = |reason: &'static str| SegmentError::BadShape { shape: dims.to_vec(), reason };
        if dims.is_empty() {
            return Err(bad("an array has at least one dimension"));
        }
        if dims.len() > MAX_DIMS {
            return Err(bad("more dimensions than MAX_DIMS (7)"));
        }
        if dims.contains(&0) {
            return Err(SegmentError::ZeroLength);
        }
        dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or(SegmentError::TooLarge {
            requested: u64::MAX,
            capacity: crate::segment::MAX_SEGMENT_LEN,
            where_: "the address space (the shape's element count overflows)",
        })?;
        let mut all = [0; MAX_DIMS];
        all[..dims.len()].copy_from_slice(dims);
        Ok(Shape { ndim: dims.len() as u8, dims: all })
    }

    /// A one-dimensional shape of `len` elements (`len` ≥ 1 for a valid array).
    pub(crate) fn flat(len: usize) -> Shape {
        let mut dims = [0; MAX_DIMS];
        dims[0] = len;
        Shape { ndim: 1, dims }
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.dims[..self.ndim as usize]
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.ndim as usize
    }

    /// Number of elements (the product of the dimensions).
    pub fn len(&self) -> usize {
        self.dims().iter().product()
    }

    /// Never true: a shape has no zero dimension.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of rows: the first dimension.
    pub fn rows(&self) -> usize {
        self.dims[0]
    }

    /// Elements per row: the product of every dimension but the first (1 for a 1-D shape).
    pub fn row_len(&self) -> usize {
        self.dims()[1..].iter().product()
    }

    /// This shape with `rows` rows (a band of it along the first axis).
    pub(crate) fn with_rows(mut self, rows: usize) -> Shape {
        self.dims[0] = rows;
        self
    }

    /// The record stored in a segment.
    pub(crate) fn to_record(self) -> [u64; 8] {
        let mut w = [0u64; 8];
        w[0] = u64::from(self.ndim);
        for (i, &d) in self.dims().iter().enumerate() {
            w[i + 1] = d as u64;
        }
        w
    }

    /// The shape a stored record says, checked against the header's element count. Pure:
    /// never panics, whatever the words.
    pub fn from_record(words: &[u64; 8], elem_count: u64) -> Result<Shape, String> {
        let ndim = words[0];
        if ndim == 0 || ndim > MAX_DIMS as u64 {
            return Err(format!("the shape record says {ndim} dimensions (1 to {MAX_DIMS})"));
        }
        let (used, rest) = words[1..].split_at(ndim as usize);
        if used.contains(&0) || rest.iter().any(|&w| w != 0) {
            return Err(format!("the shape record {used:?} holds a zero dimension or stray words"));
        }
        let product = used.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
        if product != Some(elem_count) {
            return Err(format!("the shape {used:?} does not hold the header's {elem_count} elements"));
        }
        let dims: Vec<usize> = used.iter().map(|&d| d as usize).collect();
        Shape::new(&dims).map_err(|e| e.to_string())
    }

    /// Store the record at `at` with Relaxed atomic word stores (publication orders them).
    ///
    /// # Safety
    ///
    /// `at` is 8-aligned, valid for [`SHAPE_RECORD`] bytes of writes, in a segment not yet
    /// published (no other process reads it).
    pub(crate) unsafe fn store(self, at: *mut u8) {
        for (i, w) in self.to_record().into_iter().enumerate() {
            // SAFETY: word `i` of the 64 bytes at `at`, aligned (the contract).
            unsafe { AtomicU64::from_ptr(at.add(i * 8).cast()) }.store(w, Ordering::Relaxed);
        }
    }

    /// Load the record at `at` word by word with atomic loads (a peer may write there).
    ///
    /// # Safety
    ///
    /// `at` is 8-aligned and valid for [`SHAPE_RECORD`] bytes of reads, and every other
    /// access to them is atomic.
    pub(crate) unsafe fn load(at: *const u8) -> [u64; 8] {
        // SAFETY: word `i` of the 64 bytes at `at`, aligned (the contract).
        std::array::from_fn(|i| unsafe { AtomicU64::from_ptr(at.add(i * 8).cast_mut().cast()) }.load(Ordering::Relaxed))
    }
}

impl std::ops::Deref for Shape {
    type Target = [usize];
    fn deref(&self) -> &[usize] {
        self.dims()
    }
}

impl std::fmt::Debug for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.dims())
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.dims())
    }
}

/// What array constructors take for a shape: a length (`1000`, one dimension), an array or
/// slice of dimensions (`[512, 512]`, `&dims[..]`), a tuple (`(512, 512)`), a `Vec`, or a
/// [`Shape`].
pub trait IntoShape {
    /// The checked shape (see [`Shape::new`]).
    fn into_shape(self) -> Result<Shape, SegmentError>;
}

impl IntoShape for Shape {
    fn into_shape(self) -> Result<Shape, SegmentError> {
        Ok(self)
    }
}

impl IntoShape for usize {
    fn into_shape(self) -> Result<Shape, SegmentError> {
        Shape::new(&[self])
    }
}

impl IntoShape for &[usize] {
    fn into_shape(self) -> Result<Shape, SegmentError> {
        Shape::new(self)
    }
}

impl<const N: usize> IntoShape for [usize; N] {
    fn into_shape(self) -> Result<Shape, SegmentError> {
        Shape::new(&self)
    }
}

impl<const N: usize> IntoShape for &[usize; N] {
    fn into_shape(self) -> Result<Shape, SegmentError> {
        Shape::new(self)
    }
}

impl IntoShape for Vec<usize> {
    fn into_shape(self) -> Result<Shape, SegmentError> {
        Shape::new(&self)
    }
}

impl IntoShape for &Vec<usize> {
    fn into_shape(self) -> Result<Shape, SegmentError> {
        Shape::new(self)
    }
}

macro_rules! tuple_shape {
    ($($v:ident),+) => {
        impl IntoShape for ($(tuple_shape!(@usize $v),)+) {
            fn into_shape(self) -> Result<Shape, SegmentError> {
                let ($($v,)+) = self;
                Shape::new(&[$($v),+])
            }
        }
    };
    (@usize $v:ident) => { usize };
}
tuple_shape!(a, b);
tuple_shape!(a, b, c);
tuple_shape!(a, b, c, d);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_hostile_records_are_refused() {
        let s = Shape::new(&[2, 3, 4]).unwrap();
        assert_eq!(Shape::from_record(&s.to_record(), 24), Ok(s));
        assert!(Shape::from_record(&s.to_record(), 25).is_err());
        let mut w = s.to_record();
        for (i, v) in [(0, 0), (0, 8), (0, u64::MAX), (2, 0), (5, 1), (7, 1)] {
            w[i] = v;
            assert!(Shape::from_record(&w, 24).is_err(), "word {i} = {v}");
            w = s.to_record();
        }
        let huge = [2, u64::MAX, 2, 0, 0, 0, 0, 0];
        assert!(Shape::from_record(&huge, 0).is_err());
        assert!(matches!(Shape::new(&[]), Err(SegmentError::BadShape { .. })));
        assert!(matches!(Shape::new(&[1; 8]), Err(SegmentError::BadShape { .. })));
        assert!(matches!(Shape::new(&[3, 0]), Err(SegmentError::ZeroLength)));
        assert!(matches!(Shape::new(&[usize::MAX, 2]), Err(SegmentError::TooLarge { .. })));
        assert_eq!((5usize.into_shape().unwrap().dims(), (2, 3).into_shape().unwrap().len()), (&[5][..], 6));
    }
}
