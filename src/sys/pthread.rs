//! Declarations `libc` does not carry.

unsafe extern "C" {
    /// glibc ≥ 2.30: `pthread_mutex_timedlock` against a chosen clock (we pass
    /// CLOCK_MONOTONIC so wall-clock jumps cannot stretch or cut a timeout).
    pub fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}
