//! # shmkit
//!
//! The shared-memory side of Python's `multiprocessing`, for Rust: typed values and arrays
//! in shared memory, robust process-shared locks, queues and pipes, a shared dict, and a
//! process pool that hands workers slices of shared numeric buffers without copying.
//! Linux only (x86_64, aarch64, glibc).
//!
//! | Python `multiprocessing`                           | shmkit                                             |
//! |----------------------------------------------------|----------------------------------------------------|
//! | `shared_memory.SharedMemory(name, create, size)`   | [`Segment::create`] / [`Segment::open`]; raw mode for interop |
//! | `Value('d', 0.0)` with `get_lock()`                | [`SharedValue`]                                    |
//! | `Value('q', lock=False)` + atomics                 | [`SharedAtomic`]                                   |
//! | `Array('d', n)`                                    | [`SharedArray`] with range claims                  |
//! | `Lock`, `RLock`                                    | [`Mutex`] (robust: a dead owner is reported)       |
//! | `Semaphore`, `BoundedSemaphore`                    | [`Semaphore`], [`RobustSemaphore`]                 |
//! | `Condition`, `Event`, `Barrier`                    | [`Condvar`], [`Event`], [`Barrier`]                |
//! | `Queue`, `Pipe`                                    | [`channel::Queue`], [`channel::ByteQueue`], [`channel::Pipe`] |
//! | `Manager().dict()`, `Manager().list()`             | [`SharedDict`] (atomic `update`), [`SharedList`]   |
//! | `Manager().Namespace()`                            | your `#[repr(C)]` struct in a [`SharedObject`] or [`SharedValue`] |
//! | `Process(target, args)`                            | [`process::Process`]                               |
//! | `Pool(n)`: `map`, `imap`, `apply_async`, …          | [`pool::Pool`], plus `map_chunks` over a `SharedArray` |
//!
//! ## 1. The counter race, and its two fixes
//!
//! Python's classic `d['count'] += 1` from several processes loses updates: each process
//! reads, adds, and writes back, and two processes that read the same value both write
//! value + 1. A robust lock or an atomic read-modify-write fixes it. (`shmkit demo` runs
//! this with a table of final counts and rates.)
//!
//! ```
//! use std::sync::OnceLock;
//! use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
//! use shmkit::{Mutex, SharedObject, ShmSafe, pool::Pool};
//!
//! #[repr(C)]
//! struct Counters {
//!     racy: AtomicU64,
//!     locked: Mutex<u64>,
//!     atomic: AtomicU64,
//! }
//! // SAFETY: #[repr(C)] and made only of ShmSafe fields.
//! unsafe impl ShmSafe for Counters {}
//!
//! // Created before the pool, so every worker (a fork of this process) maps it as well.
//! static COUNTERS: OnceLock<SharedObject<Counters>> = OnceLock::new();
//!
//! fn work(n: u64) -> u64 {
//!     let c = COUNTERS.get().expect("created before the pool");
//!     for _ in 0..n {
//!         let v = c.racy.load(Relaxed); // read ...
//!         c.racy.store(v + 1, Relaxed); // ... write back: updates get lost
//!         *c.locked.lock().expect("robust lock") += 1;
//!         c.atomic.fetch_add(1, Relaxed);
//!     }
//!     n
//! }
//!
//! COUNTERS.set(SharedObject::anonymous(|_| {})?).ok();
//! let pool = Pool::new(2)?;
//! pool.map(work, [50_000u64; 4])?;
//! let c = COUNTERS.get().unwrap();
//! assert_eq!(*c.locked.lock().expect("robust lock"), 200_000);
//! assert_eq!(c.atomic.load(Relaxed), 200_000);
//! assert!(c.racy.load(Relaxed) <= 200_000); // how many are lost is up to the scheduler
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## 2. A shared array with a pool, without copies
//!
//! Each worker gets its own `&mut [T]` chunk of a [`SharedArray`] by index arithmetic,
//! through a robust claim: no pickling, no copies, no overlapping `&mut`.
//!
//! ```
//! use shmkit::{SharedArray, pool::Pool};
//! let pool = Pool::new(2)?;
//! let grid = SharedArray::<f64>::create(None, 1 << 16)?;
//! pool.map_chunks_mut(&grid, 4096, |start, chunk: &mut [f64]| {
//!     for (i, x) in chunk.iter_mut().enumerate() {
//!         *x = (start + i) as f64;
//!     }
//! })?;
//! let partial: Vec<f64> = pool.map_chunks(&grid, 4096, |_, chunk: &[f64]| chunk.iter().sum())?;
//! assert_eq!(partial.iter().sum::<f64>(), (0..1 << 16).map(|i| i as f64).sum::<f64>());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## 3. A robust lock recovering from a dead owner
//!
//! A process killed while holding a Python `Lock` leaves everybody else waiting for ever.
//! shmkit's [`Mutex`] hands the next locker the guard *and* the news
//! ([`AcquireError::OwnerDied`]); it repairs the data and marks it consistent.
//!
//! ```
//! use std::sync::OnceLock;
//! use std::time::Duration;
//! use shmkit::{AcquireError, Mutex, SharedObject, process::Process};
//!
//! static BALANCE: OnceLock<SharedObject<Mutex<i64>>> = OnceLock::new();
//!
//! fn crash_mid_update(_: u8) -> u8 {
//!     let mut balance = BALANCE.get().expect("created first").lock().expect("lock");
//!     *balance = -1; // half-way through an update ...
//!     std::process::abort() // ... the process dies holding the lock
//! }
//!
//! BALANCE.set(SharedObject::anonymous(|m: &mut Mutex<i64>| *m.get_mut() = 100)?).ok();
//! let mut child = Process::spawn(crash_mid_update, 0u8)?;
//! assert!(child.join_timeout(Duration::from_secs(10)).is_err()); // killed by SIGABRT
//! match BALANCE.get().unwrap().lock() {
//!     Err(AcquireError::OwnerDied(mut died)) => {
//!         **died.get_mut() = 100; // repair: back to the last good value
//!         let balance = died.mark_consistent()?; // usable again, by everyone
//!         assert_eq!(*balance, 100);
//!     }
//!     _ => panic!("the next locker is told the owner died"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Layers
//!
//! Each calling only those below it: `sys` (thin unsafe syscall wrappers) → [`segment`]
//! (create/open/validate/liveness) → [`sync`] → [`shared`] → [`channel`], [`process`] →
//! [`pool`], [`manager`].
//!
//! ## Design notes
//!
//! The rustdoc is for users. The protocols underneath are written up for maintainers in
//! notes beside the code (in the repository, not in the published docs):
//!
//! - `src/segment/README.md`: the header and its publication, open validation and bounded
//!   waits, special files, the liveness `flock`, who unlinks.
//! - `src/sync/README.md`: the lazily initialised robust mutex, owner death (thread or
//!   process), range claims, futex protocols.
//! - `src/channel/README.md`: ring stamps and slot states, slot locks, what a death at each
//!   pause point leaves, byte and serde queues, pipes.
//! - `src/manager/README.md`: dict striping, the per-stripe undo journal and how a kill
//!   mid-update rolls back, the list.
//! - `src/pool/README.md`: mailboxes, the manager process, task entries, cancelling failed
//!   batch calls, the start-up timeout, worker death.

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
#[doc(hidden)]
pub mod testing;

/// The `ndarray` crate this build's views are made of (feature `ndarray`).
#[cfg(feature = "ndarray")]
pub use ndarray;

pub use manager::{ManagerError, SharedDict, SharedList};
pub use segment::{Segment, SegmentError, SegmentOptions};
pub use shared::{Claim, ClaimError, ClaimMut, Element, Rows, SharedArray, SharedAtomic, SharedObject, SharedValue};
pub use sync::{
    AcquireError, Barrier, Condvar, Event, LockError, Mutex, MutexGuard, OwnerDied, RobustSemaphore, RwLock, Semaphore,
    ShmSafe, WaitPolicy,
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
    /// A pool operation failed (a task panicked, a worker died, …).
    #[error(transparent)]
    Pool(#[from] pool::PoolError),
    /// Starting or supervising a process failed.
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    /// A pipe end failed (the peer hung up or died, …).
    #[error(transparent)]
    Pipe(#[from] channel::PipeError),
}
