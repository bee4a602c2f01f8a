//! Thin wrappers over the Linux system calls shmkit needs.
//!
//! Every function here is a small, audited wrapper: each `unsafe` block names the
//! invariant it relies on. Higher layers never call `libc` for these operations
//! directly. Errors are returned as [`std::io::Error`] so callers can keep them as
//! the `source` of their own typed errors.

pub mod clock;
pub mod fd;
pub mod futex;
pub mod held;
pub mod owner;
pub mod process;
pub mod pthread;
pub mod sched;
pub mod stdio;

pub use clock::Deadline;

use std::sync::atomic::{AtomicU8, Ordering};

/// Run `register` once per process, never waiting for another thread that is running it.
///
/// For fork handlers (`pthread_atfork`): a `std::sync::Once` would make a child forked while
/// another thread runs the registration wait for ever (that thread does not exist in the
/// child). Here a caller that finds the registration under way goes on without it.
pub(crate) fn once_without_waiting(state: &AtomicU8, register: impl FnOnce()) {
    const IDLE: u8 = 0;
    const RUNNING: u8 = 1;
    const DONE: u8 = 2;
    if state.load(Ordering::Acquire) == DONE {
        return;
    }
    if state.compare_exchange(IDLE, RUNNING, Ordering::AcqRel, Ordering::Acquire).is_ok() {
        register();
        state.store(DONE, Ordering::Release);
    }
}

/// Registers a fork handler when the binary loads (`.init_array`), before `main` and so
/// before any thread can fork; `$register` runs again, harmlessly, on first use.
macro_rules! register_at_load {
    ($register:path) => {
        #[used]
        #[unsafe(link_section = ".init_array")]
        static AT_LOAD: extern "C" fn() = {
            extern "C" fn at_load() {
                $register();
            }
            at_load
        };
    };
}
pub(crate) use register_at_load;
