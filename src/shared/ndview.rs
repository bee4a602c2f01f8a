//! `ndarray` views of claims (feature `ndarray`): a claim is an `ArrayView` /
//! `ArrayViewMut` of its true shape over the shared memory, no copy. The claim stays
//! borrowed while the view lives, so the view can never outlive the claim that makes it
//! sound.
//!
//! ```
//! use ndarray::{Ix2, s};
//! use shmkit::Rows;
//! let grid = shmkit::SharedArray::<f64>::anonymous([4, 8])?;
//! let mut band = grid.claim_mut(Rows(1..3))?;
//! let mut v = band.view_mut::<Ix2>()?;       // 2 x 8, rows 1 and 2 of the grid
//! v.slice_mut(s![.., 0]).fill(1.0);
//! drop(band);
//! let all = grid.read()?;
//! assert_eq!(all.view::<Ix2>()?.column(0).to_vec(), [0.0, 1.0, 1.0, 0.0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use ndarray::{ArrayView, ArrayViewMut, Dimension, IxDyn};

use super::array::{Claim, ClaimMut};
use super::claims::ClaimError;
use super::shape::Shape;

/// The dimension of type `D` for `shape`, or the typed error.
fn dim<D: Dimension>(shape: Shape) -> Result<D, ClaimError> {
    D::from_dimension(&IxDyn(shape.dims()))
        .ok_or_else(|| ClaimError::Dimensions { shape: shape.to_vec(), wanted: D::NDIM.unwrap_or(0) })
}

/// A claim's data has exactly `shape.len()` elements: a shape error here is a bug.
fn internal(e: ndarray::ShapeError) -> ClaimError {
    ClaimError::Corrupt { reason: format!("internal: the claim does not match its shape ({e})") }
}

impl<T> Claim<'_, T> {
    /// The claim as an `ArrayView` of its [`shape`](Self::shape) with `D` dimensions:
    /// `view::<Ix2>()` for a band of a 2-D grid (fast fixed-dimension indexing), or
    /// `view::<IxDyn>()` for any shape. A shape of another number of dimensions is
    /// [`ClaimError::Dimensions`].
    pub fn view<D: Dimension>(&self) -> Result<ArrayView<'_, T, D>, ClaimError> {
        ArrayView::from_shape(dim::<D>(self.shape())?, &self[..]).map_err(internal)
    }
}

impl<T> ClaimMut<'_, T> {
    /// The claim as a read-only `ArrayView`; see [`Claim::view`].
    pub fn view<D: Dimension>(&self) -> Result<ArrayView<'_, T, D>, ClaimError> {
        ArrayView::from_shape(dim::<D>(self.shape())?, &self[..]).map_err(internal)
    }

    /// The claim as an `ArrayViewMut` of its shape with `D` dimensions: write through it in
    /// place. A shape of another number of dimensions is [`ClaimError::Dimensions`].
    pub fn view_mut<D: Dimension>(&mut self) -> Result<ArrayViewMut<'_, T, D>, ClaimError> {
        let d = dim::<D>(self.shape())?;
        ArrayViewMut::from_shape(d, &mut self[..]).map_err(internal)
    }
}
