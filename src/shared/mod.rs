//! Typed data in shared memory: [`SharedArray`], [`SharedValue`], [`SharedAtomic`], and
//! the range claims that make access to them sound across processes.

mod array;
pub(crate) mod claims;
mod element;
#[cfg(feature = "ndarray")]
mod ndview;
mod object;
mod shape;
mod value;

pub use array::{AtomicClaim, Claim, ClaimMut, ClaimRange, DEFAULT_CLAIM_SLOTS, Rows, SharedArray};
pub use claims::{ClaimError, MAX_CLAIM_SLOTS};
pub use element::{AtomicElement, Element, type_info};
pub(crate) use object::fnv1a;
pub use object::{SharedObject, object_type_info};
pub use shape::{IntoShape, MAX_DIMS, Shape};
pub use value::{SharedAtomic, SharedValue, ValueGuard};
