//! Robust process-shared synchronisation primitives.
//!
//! Every primitive is `#[repr(C)]`, holds no pointers, and can be placed in any segment.

mod error;
mod raw_mutex;

pub use error::LockError;
pub use raw_mutex::{Acquired, RawMutex};
