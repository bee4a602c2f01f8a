//! Shared (not `FUTEX_PRIVATE_FLAG`) futex wait and wake on a word in shared memory.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use super::Deadline;

/// Outcome of [`wait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Woken, or the word no longer held `expected`, or a signal interrupted the wait.
    Woken,
    /// The deadline (or the cap) passed.
    TimedOut,
}

/// Block while `*word == expected`, until woken, the deadline passes, or at most `cap`.
///
/// Spurious returns are allowed: callers re-check their condition in a loop.
pub fn wait(word: &AtomicU32, expected: u32, deadline: Deadline, cap: Option<Duration>) -> Wait {
    let ts = deadline.rel_timespec(cap);
    if let Some(t) = ts
        && t.tv_sec == 0
        && t.tv_nsec == 0
    {
        return Wait::TimedOut;
    }
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned 32-bit atomic for the duration of the call; the
    // kernel only reads it. `ts_ptr` is null or points to a live timespec. FUTEX_WAIT without
    // the private flag works across processes on shared mappings.
    let r = unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, ts_ptr, std::ptr::null::<u32>(), 0u32)
    };
    if r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT) {
        Wait::TimedOut
    } else {
        Wait::Woken
    }
}

/// Wake up to `n` waiters blocked on `word`; returns how many were woken.
pub fn wake(word: &AtomicU32, n: u32) -> usize {
    let n = n.min(i32::MAX as u32);
    // SAFETY: `word` is a valid, aligned 32-bit atomic; FUTEX_WAKE does not access memory
    // beyond using the address as a key.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            n,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if r < 0 { 0 } else { r as usize }
}

/// Wake every waiter on `word`.
pub fn wake_all(word: &AtomicU32) -> usize {
    wake(word, i32::MAX as u32)
}
