//! Robust, process-shared pthread mutexes (`nix` has no wrapper for them): thin `unsafe`
//! wrappers returning the pthread error code (0 on success), so callers map codes to
//! their own errors exactly as before.

use std::mem::MaybeUninit;

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
    // SAFETY: per the caller's contract.
    unsafe { libc::pthread_mutex_lock(m) }
}

/// `pthread_mutex_trylock`.
///
/// # Safety
///
/// `m` must point to a live, initialised mutex.
#[inline]
pub unsafe fn trylock(m: *mut pthread_mutex_t) -> libc::c_int {
    // SAFETY: per the caller's contract.
    unsafe { libc::pthread_mutex_trylock(m) }
}

/// `pthread_mutex_clocklock(m, CLOCK_MONOTONIC, deadline)`.
///
/// # Safety
///
/// `m` must point to a live, initialised mutex.
#[inline]
pub unsafe fn lock_until_monotonic(m: *mut pthread_mutex_t, deadline: &libc::timespec) -> libc::c_int {
    // SAFETY: per the caller's contract; `deadline` is a live timespec.
    unsafe { pthread_mutex_clocklock(m, libc::CLOCK_MONOTONIC, deadline) }
}

/// `pthread_mutex_consistent`.
///
/// # Safety
///
/// `m` must point to a live, initialised robust mutex that the calling thread holds.
pub unsafe fn consistent(m: *mut pthread_mutex_t) -> libc::c_int {
    // SAFETY: per the caller's contract.
    unsafe { libc::pthread_mutex_consistent(m) }
}

/// `pthread_mutex_unlock`.
///
/// # Safety
///
/// `m` must point to a live, initialised mutex (with ERRORCHECK, unlocking a lock the
/// thread does not hold returns EPERM instead of corrupting it).
#[inline]
pub unsafe fn unlock(m: *mut pthread_mutex_t) -> libc::c_int {
    // SAFETY: per the caller's contract.
    unsafe { libc::pthread_mutex_unlock(m) }
}
