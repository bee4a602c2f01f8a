//! Robust process-shared synchronisation primitives.
//!
//! | Python `multiprocessing`       | shmkit                                  | built on                          |
//! |--------------------------------|-----------------------------------------|-----------------------------------|
//! | `Lock` (+ the data it guards)  | [`Mutex<T>`]                            | robust pthread mutex              |
//! | —                              | [`RwLock<T>`]                           | robust gate + robust reader slots |
//! | `Semaphore`, `BoundedSemaphore`| [`Semaphore`]                           | one futex word                    |
//! | —                              | [`RobustSemaphore<N>`]                  | N robust owner mutexes            |
//! | `Condition`                    | [`Condvar`] (with [`Mutex`])            | futex sequence counter            |
//! | `Event`                        | [`Event`]                               | one futex word                    |
//! | `Barrier`                      | [`Barrier`]                             | one futex word                    |
//!
//! Every primitive is `#[repr(C)]`, holds no pointers, is valid as all-zero bytes (fresh
//! segments are zero-filled), implements [`ShmSafe`], and can be placed in any segment,
//! alone or inside your own `#[repr(C)]` struct — see
//! [`SharedObject`](crate::shared::SharedObject). Every blocking call has a timed variant
//! (CLOCK_MONOTONIC) and a `try_` variant.
//!
//! # Waiting
//!
//! Every blocking wait of the crate (these primitives, queues, pipes, pool results, range
//! claims) spins before it sleeps in the kernel, as a [`WaitPolicy`] says: by default
//! [`WaitPolicy::Adaptive`], a spin budget that follows how long waits take and collapses
//! when processes outnumber CPUs. Choose another per call (`acquire_with`, `wait_with`),
//! per channel handle (`set_wait_policy`) or for the process
//! ([`WaitPolicy::set_process_default`]).
//!
//! # When a participant dies
//!
//! Python's primitives hang for ever when a process dies at the wrong moment. shmkit's
//! never hang on a death; each reports or repairs it as its module documents:
//!
//! | primitive          | a process dies while …       | survivors get                                            |
//! |--------------------|------------------------------|----------------------------------------------------------|
//! | `Mutex`            | holding it                   | next locker: [`AcquireError::OwnerDied`] with the guard   |
//! | `RwLock`           | reading                      | nothing to see: its slot is freed                        |
//! | `RwLock`           | writing                      | next reader/writer: `OwnerDied` with the guard           |
//! | `Semaphore`        | holding a permit             | the permit is lost (as in Python/POSIX): use timeouts    |
//! | `RobustSemaphore`  | holding a permit             | the permit comes back (`Permit::recovered`)               |
//! | `Condvar`          | waiting / holding the mutex  | nothing / the relock reports `OwnerDied`                 |
//! | `Event`            | anything                     | nothing (nobody owns an event)                           |
//! | `Barrier`          | before arriving              | first timeout breaks it: all waiters get `Broken`        |
//!
//! An owner-died guard must be repaired and [marked consistent](OwnerDied::mark_consistent);
//! dropped without that, the lock is permanently [`LockError::NotRecoverable`] — an
//! error, never a hang.
//!
//! # When a *thread* exits holding a lock
//!
//! Thread death is not process death: a guard leaked by a thread that then exits
//! (`Box::leak`, `mem::forget`) can keep a `&mut` alive in its process. Only the end of
//! the whole process ends every borrow. So every lock records its owner's pid, and the
//! next locker that the kernel tells "owner died" checks that process: if it has ended
//! (a killed process still exiting is waited for), [`AcquireError::OwnerDied`] as above;
//! if it lives (this very process included), the lock is refused —
//! [`LockError::AbandonedByThread`] for every caller in every process — until it ends (for
//! this process: for ever). A `RobustSemaphore` loses that permit meanwhile; an `RwLock`
//! whose reader leaked still admits readers but no writer. Range claims behave the same
//! ([`ClaimError::Abandoned`](crate::ClaimError::Abandoned)). The protocol is in
//! `src/sync/README.md`.
//!
//! # Rules every guard follows
//!
//! - Guards are `!Send`: a robust pthread mutex must be unlocked by the thread that
//!   locked it.
//! - Every held robust lock is counted in `sys::held`, and a segment is never unmapped
//!   while its process holds a lock (glibc's robust list runs through the lock memory).
//! - No guard hands out `&T` to data another process may write at the same time.
//!
//! The futex-based algorithms (semaphore, event, barrier, the condvar's sequence word)
//! run under [loom](https://docs.rs/loom) too:
//! `RUSTFLAGS="--cfg loom" cargo test --release --lib loom` (see `src/sync/loom_tests.rs`).

/// `Default` for primitives whose `new()` is their only starting state.
macro_rules! default_is_new {
    ($($ty:ty),+) => {$(
        impl Default for $ty {
            fn default() -> Self {
                Self::new()
            }
        }
    )+};
}

mod barrier;
mod condvar;
mod error;
mod event;
mod lazy_mutex;
#[cfg(all(test, loom))]
mod loom_tests;
mod mutex;
mod park;
mod raw_mutex;
mod robust_semaphore;
mod rwlock;
mod semaphore;
mod shim;
mod shm_safe;
pub(crate) mod wait;
pub(crate) mod wait_for;

pub use barrier::Barrier;
pub use condvar::{Condvar, WaitTimeoutResult};
pub use error::{AcquireError, AcquireResult, LockError, OwnerDied, Recover};
pub use event::Event;
pub use lazy_mutex::{INIT_STALL, LazyRawMutex, TRY_INIT_GRACE};
pub use mutex::{Mutex, MutexGuard};
pub use raw_mutex::{Acquired, RawMutex};
pub use robust_semaphore::{Permit, RobustSemaphore};
pub use rwlock::{DEFAULT_READERS, RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use semaphore::Semaphore;
pub use shm_safe::ShmSafe;
pub use wait::{INITIAL_SPIN, MAX_SPIN, MIN_SPIN, PURE_SPIN, WaitPolicy};
