//! Robust, process-shared pthread mutexes (`nix` has no wrapper for them): thin `unsafe`
//! wrappers returning the pthread error code (0 on success), so callers map codes to
//! their own errors exactly as before.
//!
//! The mutexes live in shared memory that a peer can write. glibc dispatches on the
//! mutex's `__kind` word: rewritten to an elision kind it executes hardware-transaction
//! instructions (SIGILL where the CPU has none), to a plain kind it may trip an internal
//! assertion (abort). So every call first checks that `__kind` still holds exactly what
//! [`init_robust_shared`] wrote, and returns `EINVAL` (a corrupt lock) otherwise.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicI32, Ordering::Relaxed};

pub use libc::pthread_mutex_t;

unsafe extern "C" {
    /// glibc ≥ 2.30: `pthread_mutex_timedlock` against a chosen clock (we pass
    /// CLOCK_MONOTONIC so wall-clock jumps cannot stretch or cut a timeout).
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

/// Byte offset of glibc's `__kind` in `pthread_mutex_t` (`__lock`, `__count`, `__owner`,
/// `__nusers`, then `__kind`, on x86_64 and aarch64 alike).
const KIND_OFFSET: usize = 16;

/// The `__kind` that [`init_robust_shared`] produces (0 until known).
static OUR_KIND: AtomicI32 = AtomicI32::new(0);

fn kind_word(m: *mut pthread_mutex_t) -> *const AtomicI32 {
    m.cast::<u8>().wrapping_add(KIND_OFFSET).cast::<AtomicI32>()
}

/// Whether `m`'s `__kind` is what our initialisation writes.
///
/// # Safety
///
/// `m` must point to a live `pthread_mutex_t`.
#[inline(always)]
unsafe fn kind_ok(m: *mut pthread_mutex_t) -> bool {
    // SAFETY: `__kind` is a 4-aligned `int` inside the live mutex (per the contract);
    // glibc never writes it after initialisation, and we only read it.
    let kind = unsafe { (*kind_word(m)).load(Relaxed) };
    kind == GLIBC_KIND || kind_ok_slow(kind)
}

/// What glibc writes for our attributes (ERRORCHECK 2 | ROBUST 16 | PSHARED 128; these are
/// ABI, shared by processes built against different glibc versions).
const GLIBC_KIND: i32 = 2 | 16 | 128;

/// For a glibc that writes another kind than [`GLIBC_KIND`]: compare with what it wrote.
#[cold]
#[inline(never)]
fn kind_ok_slow(kind: i32) -> bool {
    let ours = OUR_KIND.load(Relaxed);
    kind == if ours != 0 { ours } else { learn_kind() }
}

/// Initialise a private probe mutex the way every shared one is, to learn its `__kind`.
#[cold]
fn learn_kind() -> i32 {
    let mut probe = MaybeUninit::<pthread_mutex_t>::zeroed();
    // SAFETY: `probe` is a local, zeroed, properly aligned mutex nobody else sees.
    if unsafe { init_robust_shared(probe.as_mut_ptr()) } != 0 {
        return -1;
    }
    OUR_KIND.load(Relaxed)
}

/// Initialise `m` as a `PTHREAD_PROCESS_SHARED | PTHREAD_MUTEX_ROBUST |
/// PTHREAD_MUTEX_ERRORCHECK` mutex; returns the first nonzero pthread code, or 0.
///
/// # Safety
///
/// `m` must be valid for writes of a `pthread_mutex_t`, suitably aligned, and no thread or
/// process may use the mutex until this returns.
pub unsafe fn init_robust_shared(m: *mut pthread_mutex_t) -> libc::c_int {
    let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    let a = attr.as_mut_ptr();
    let nz = |r: libc::c_int| if r == 0 { Ok(()) } else { Err(r) };
    // SAFETY: `attr` is initialised by pthread_mutexattr_init before any other use, and
    // destroyed once. `m` is valid and unused per the caller's contract.
    unsafe {
        if let Err(r) = nz(libc::pthread_mutexattr_init(a)) {
            return r;
        }
        let r = (|| {
            nz(libc::pthread_mutexattr_setpshared(a, libc::PTHREAD_PROCESS_SHARED))?;
            nz(libc::pthread_mutexattr_setrobust(a, libc::PTHREAD_MUTEX_ROBUST))?;
            nz(libc::pthread_mutexattr_settype(a, libc::PTHREAD_MUTEX_ERRORCHECK))?;
            nz(libc::pthread_mutex_init(m, a))
        })();
        libc::pthread_mutexattr_destroy(a);
        if r.is_ok() {
            // What glibc wrote for these attributes, the same for every such mutex.
            OUR_KIND.store((*kind_word(m)).load(Relaxed), Relaxed);
        }
        r.err().unwrap_or(0)
    }
}

/// `pthread_mutex_lock`.
///
/// # Safety
///
/// `m` must point to a live, initialised mutex.
#[inline]
pub unsafe fn lock(m: *mut pthread_mutex_t) -> libc::c_int {
    // SAFETY: per the caller's contract (a live mutex), checked to be ours first.
    unsafe { if kind_ok(m) { libc::pthread_mutex_lock(m) } else { libc::EINVAL } }
}

/// `pthread_mutex_trylock`.
///
/// # Safety
///
/// `m` must point to a live, initialised mutex.
#[inline]
pub unsafe fn trylock(m: *mut pthread_mutex_t) -> libc::c_int {
    // SAFETY: per the caller's contract (a live mutex), checked to be ours first.
    unsafe { if kind_ok(m) { libc::pthread_mutex_trylock(m) } else { libc::EINVAL } }
}

/// The owner's thread id bits of a robust mutex's lock word (the kernel's
/// `FUTEX_TID_MASK`; the other bits are `FUTEX_WAITERS` and `FUTEX_OWNER_DIED`).
const FUTEX_TID_MASK: i32 = 0x3fff_ffff;

/// Whether `m`'s lock word (`__lock`) names a live owner thread: a hint for spinning before
/// a try-lock (one relaxed load, no call into glibc). A lock whose owner died has only the
/// `FUTEX_OWNER_DIED` bit left, so it does not look locked and the try-lock reports it.
///
/// # Safety
///
/// `m` must point to a live `pthread_mutex_t`.
#[inline]
pub unsafe fn looks_locked(m: *mut pthread_mutex_t) -> bool {
    // SAFETY: `__lock`, the futex word, is the first `int` of glibc's
    // `struct __pthread_mutex_s` on every architecture (it is ABI); the mutex is live per
    // the contract, 4-aligned, and glibc only accesses `__lock` atomically.
    unsafe { (*m.cast::<AtomicI32>()).load(Relaxed) & FUTEX_TID_MASK != 0 }
}

/// `pthread_mutex_clocklock(m, CLOCK_MONOTONIC, deadline)`.
///
/// # Safety
///
/// `m` must point to a live, initialised mutex.
#[inline]
pub unsafe fn lock_until_monotonic(m: *mut pthread_mutex_t, deadline: &libc::timespec) -> libc::c_int {
    // SAFETY: per the caller's contract (a live mutex), checked to be ours first;
    // `deadline` is a live timespec.
    unsafe { if kind_ok(m) { pthread_mutex_clocklock(m, libc::CLOCK_MONOTONIC, deadline) } else { libc::EINVAL } }
}

/// `pthread_mutex_consistent`.
///
/// # Safety
///
/// `m` must point to a live, initialised robust mutex that the calling thread holds.
pub unsafe fn consistent(m: *mut pthread_mutex_t) -> libc::c_int {
    // SAFETY: per the caller's contract (a live mutex), checked to be ours first.
    unsafe { if kind_ok(m) { libc::pthread_mutex_consistent(m) } else { libc::EINVAL } }
}

/// `pthread_mutex_unlock`.
///
/// # Safety
///
/// `m` must point to a live, initialised mutex (with ERRORCHECK, unlocking a lock the
/// thread does not hold returns EPERM instead of corrupting it).
#[inline]
pub unsafe fn unlock(m: *mut pthread_mutex_t) -> libc::c_int {
    // SAFETY: per the caller's contract (a live mutex), checked to be ours first.
    unsafe { if kind_ok(m) { libc::pthread_mutex_unlock(m) } else { libc::EINVAL } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_kind_is_refused_before_glibc_sees_it() {
        let mut m = MaybeUninit::<pthread_mutex_t>::zeroed();
        let p = m.as_mut_ptr();
        // SAFETY: a local mutex, initialised before use, used by this thread only.
        unsafe {
            assert_eq!(init_robust_shared(p), 0);
            assert_eq!(lock(p), 0);
            assert_eq!(unlock(p), 0);
            let kind = &*kind_word(p);
            let ours = kind.load(Relaxed);
            assert_eq!(ours, GLIBC_KIND, "glibc's kind for robust, shared, error-checking mutexes");
            // PTHREAD_MUTEX_ELISION_NP (256) would run TSX instructions; a plain kind (0)
            // would skip the robust protocol.
            for hostile in [ours | 256, 0, ours ^ 16, -1] {
                kind.store(hostile, Relaxed);
                assert_eq!(trylock(p), libc::EINVAL);
                assert_eq!(lock(p), libc::EINVAL);
                assert_eq!(unlock(p), libc::EINVAL);
            }
            kind.store(ours, Relaxed);
            assert_eq!(trylock(p), 0);
            assert_eq!(unlock(p), 0);
        }
    }
}
