//! [`ShmSafe`]: what may be placed in a segment and shared, as `&Self`, between processes.

/// Types that may live in a shared-memory segment and be used through `&Self` by many
/// processes at once: shmkit's primitives, atomics, numbers, arrays of them, and your own
/// `#[repr(C)]` structs made of those.
///
/// ```
/// use std::sync::atomic::AtomicU64;
/// use shmkit::sync::{Barrier, Mutex, ShmSafe};
///
/// #[repr(C)]
/// struct Step {
///     barrier: Barrier,
///     best: Mutex<f64>,
///     done: AtomicU64,
///     grid_len: u64, // written once by the creator, read-only afterwards
/// }
/// // SAFETY: #[repr(C)], only ShmSafe fields, so all-zero is valid, there are no
/// // pointers, and everything mutated after publication is an atomic or a shmkit primitive.
/// unsafe impl ShmSafe for Step {}
/// ```
///
/// # Safety
///
/// Implementing this trait promises, for the type and every field in it:
///
/// - **zero is valid**: the all-zero byte pattern is a valid value (fresh segments are
///   zero-filled and are handed to initialisers as `&mut Self`), and so is any byte
///   pattern a peer process could leave behind: no `bool`, `char`, enums or `NonZero*`
///   (integers, floats and integer atomics are fine);
/// - **position independent**: no pointers, references, or anything else that means
///   something only in one address space (offsets are fine), no file descriptors, no
///   `Drop` that must run (segments never run destructors);
/// - **cross-process `Sync`**: everything that may change after the segment is published
///   changes only through interior mutability that works between processes (atomics, or
///   shmkit primitives, whose waits use shared futexes and process-shared mutexes); plain
///   fields are written only before publication, through `&mut Self`;
/// - **stable layout**: `#[repr(C)]` (or `#[repr(transparent)]`), so that every program
///   opening the segment agrees on it.
pub unsafe trait ShmSafe: Sync {}

macro_rules! shm_safe {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: integers, floats and atomics: all-zero valid, no pointers, and atomics
        // are address-free lock-free instructions that work across processes on Linux.
        unsafe impl ShmSafe for $t {}
    )*};
}

use std::sync::atomic::{
    AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize, AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicUsize,
};

shm_safe!(u8, i8, u16, i16, u32, i32, u64, i64, u128, i128, usize, isize, f32, f64);
shm_safe!(
    AtomicU8,
    AtomicI8,
    AtomicU16,
    AtomicI16,
    AtomicU32,
    AtomicI32,
    AtomicU64,
    AtomicI64,
    AtomicUsize,
    AtomicIsize
);

// SAFETY: an array of ShmSafe elements is laid out contiguously with no extra fields.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}

// SAFETY: `#[repr(C)]` lazy mutex plus a `Pod` value (no pointers, every bit pattern
// valid, so also zero); the value is only written under the process-shared lock.
unsafe impl<T: bytemuck::Pod + Send> ShmSafe for super::Mutex<T> {}

// SAFETY: a state word and a pthread mutex, all-zero is "not yet initialised".
unsafe impl ShmSafe for super::LazyRawMutex {}

// SAFETY: `#[repr(C)]` gate mutex, reader slots of lazy mutexes and atomics, and a `Pod`
// value written only by the writer holding the gate with all readers drained.
#[cfg(not(loom))]
unsafe impl<T: bytemuck::Pod + Send + Sync, const R: usize> ShmSafe for super::RwLock<T, R> {}

// The following are `#[repr(C)]` structs of atomics (and lazy mutexes), all-zero valid,
// waiting on shared futexes. Under loom the atomics are loom's (not plain memory), so the
// marker is withheld there.
// SAFETY: a 64-bit futex word (count and waiters) and two plain u32 settings; all-zero
// is an unbounded semaphore with no permits.
#[cfg(not(loom))]
unsafe impl ShmSafe for super::Semaphore {}
// SAFETY: a park word (atomics) and N lazy mutexes, all-zero valid.
#[cfg(not(loom))]
unsafe impl<const N: usize> ShmSafe for super::RobustSemaphore<N> {}
// SAFETY: a park word (atomics), all-zero valid.
#[cfg(not(loom))]
unsafe impl ShmSafe for super::Condvar {}
// SAFETY: one 64-bit futex word; all-zero is an unset event.
#[cfg(not(loom))]
unsafe impl ShmSafe for super::Event {}
// SAFETY: a 64-bit futex word and plain integers; all-zero is an unconfigured barrier,
// which reports so (`LockError::Unconfigured`).
#[cfg(not(loom))]
unsafe impl ShmSafe for super::Barrier {}
