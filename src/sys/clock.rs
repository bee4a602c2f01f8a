//! CLOCK_MONOTONIC deadlines for every timed wait in the crate.

use std::time::{Duration, Instant};

/// A point on the monotonic clock after which a timed wait gives up.
///
/// `Instant` is CLOCK_MONOTONIC on Linux; this type adds the conversions the
/// futex and pthread calls need.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    at: Option<Instant>,
}

impl Deadline {
    /// A deadline `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        Self { at: Instant::now().checked_add(timeout) }
    }

    /// A deadline that never passes.
    pub fn never() -> Self {
        Self { at: None }
    }

    /// From an optional timeout: `None` waits for ever.
    pub fn from_timeout(timeout: Option<Duration>) -> Self {
        match timeout {
            Some(t) => Self::after(t),
            None => Self::never(),
        }
    }

    /// Time left, `None` when the deadline never passes. Zero once passed.
    pub fn remaining(&self) -> Option<Duration> {
        self.at.map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Whether the deadline has passed.
    pub fn passed(&self) -> bool {
        matches!(self.remaining(), Some(d) if d.is_zero())
    }

    /// The absolute CLOCK_MONOTONIC time as a `timespec`, for
    /// `pthread_mutex_clocklock` and friends. `None` when the deadline never passes.
    pub fn abs_timespec(&self) -> Option<libc::timespec> {
        let remaining = self.remaining()?;
        let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `now` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
        let mut sec = now.tv_sec.saturating_add(remaining.as_secs() as libc::time_t);
        let mut nsec = now.tv_nsec + remaining.subsec_nanos() as libc::c_long;
        if nsec >= 1_000_000_000 {
            nsec -= 1_000_000_000;
            sec = sec.saturating_add(1);
        }
        Some(libc::timespec { tv_sec: sec, tv_nsec: nsec })
    }

    /// The remaining time as a relative `timespec` (for FUTEX_WAIT), capped at `cap`.
    pub fn rel_timespec(&self, cap: Option<Duration>) -> Option<libc::timespec> {
        let d = match (self.remaining(), cap) {
            (None, None) => return None,
            (Some(r), None) => r,
            (None, Some(c)) => c,
            (Some(r), Some(c)) => r.min(c),
        };
        Some(libc::timespec { tv_sec: d.as_secs() as libc::time_t, tv_nsec: d.subsec_nanos() as libc::c_long })
    }
}

/// Now on CLOCK_MONOTONIC, in nanoseconds: a time another process of this machine reads on
/// the same clock (a task's start, written by a worker and compared by its supervisor).
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(now.tv_nsec as u64)
}
