//! This process's pid, cached and fork-safe: robust locks record their owner's pid on
//! every acquisition (see `sync/README.md`), so it must not cost a system call.
//! Whether a recorded owner's process has ended is [`super::process::process_ended`].

use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

/// This process's pid, 0 until first asked (and again in a freshly forked child).
static PID: AtomicU32 = AtomicU32::new(0);
static AT_FORK: AtomicU8 = AtomicU8::new(0);

super::register_at_load!(register_fork_handler);

fn register_fork_handler() {
    super::once_without_waiting(&AT_FORK, || {
        // SAFETY: registers a handler that only performs an atomic store; it may run in
        // the child of any fork, where only async-signal-safe work is allowed, which an
        // atomic store is.
        unsafe { libc::pthread_atfork(None, None, Some(forget_pid_in_child)) };
    });
}

extern "C" fn forget_pid_in_child() {
    PID.store(0, Ordering::Relaxed);
}

/// The calling process's pid, without a system call after the first (fork-safe: a
/// `pthread_atfork` child handler forgets the parent's pid).
#[inline]
pub fn pid() -> u32 {
    let p = PID.load(Ordering::Relaxed);
    if p != 0 { p } else { pid_slow() }
}

#[cold]
fn pid_slow() -> u32 {
    register_fork_handler();
    let p = std::process::id();
    PID.store(p, Ordering::Relaxed);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cached_pid_is_this_process() {
        assert_eq!(pid(), std::process::id());
    }
}
