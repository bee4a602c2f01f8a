//! # shmkit
//!
//! The shared-memory side of Python's `multiprocessing`, for Rust: typed values and
//! arrays in shared memory, robust process-shared locks, and the segment protocol under
//! them. Linux only (x86_64, aarch64, glibc).
//!
//! | Python `multiprocessing`                        | shmkit                                   |
//! |-------------------------------------------------|------------------------------------------|
//! | `shared_memory.SharedMemory(name, create, size)` | [`Segment::create`] / [`Segment::open`], raw mode for interop |
//! | `Value('d', 0.0)` with `get_lock()`              | [`SharedValue`] (robust lock built in)   |
//! | `Value('q', 0, lock=False)` + atomics            | [`SharedAtomic`]                         |
//! | `Array('d', n)`                                  | [`SharedArray`] with range claims        |
//!
//! ```
//! use shmkit::SharedArray;
//! let grid = SharedArray::<f64>::create(None, 1 << 16)?;
//! let peer = SharedArray::<f64>::open(grid.name().unwrap())?; // any process, by name
//! peer.claim_mut(0..10)?.fill(3.0);
//! assert_eq!(grid.copy_to_vec()?[..10], [3.0; 10]);
//! assert!(SharedArray::<f32>::open(grid.name().unwrap()).is_err()); // wrong element type
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! Layers, each calling only those below it: `sys` (thin unsafe syscall wrappers) →
//! [`segment`] → [`sync`] → [`shared`].

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "shmkit supports Linux only (x86_64 and aarch64, glibc): it is built on /dev/shm, \
     memfd_create, futexes and robust process-shared pthread mutexes."
);

pub mod channel;
pub mod manager;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod pool;
pub mod process;
pub mod segment;
pub mod shared;
pub mod sync;
#[doc(hidden)]
pub mod sys;

pub use manager::{ManagerError, SharedDict, SharedList};
pub use segment::{Segment, SegmentError, SegmentOptions};
pub use shared::{ClaimError, Element, SharedArray, SharedAtomic, SharedObject, SharedValue};
pub use sync::{
    AcquireError, Barrier, Condvar, Event, LockError, Mutex, MutexGuard, OwnerDied, RobustSemaphore, RwLock, Semaphore,
    ShmSafe,
};

/// Any shmkit error, for callers who mix areas and use `?`.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Creating, opening or removing a segment failed.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// A claim on shared data was refused.
    #[error(transparent)]
    Claim(#[from] ClaimError),
    /// A lock operation failed.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A shared dict or list operation failed.
    #[error(transparent)]
    Manager(#[from] ManagerError),
}
