//! Who owns a lock: this process's pid (cached, fork-safe) and whether a recorded owner's
//! process has ended.
//!
//! Robust locks record their owner's pid in a spare word next to the pthread mutex (see
//! `sync/README.md`). When the kernel reports a dead owner, it only means a *thread*
//! died; the borrows that thread handed out end only with its *process*. These two calls
//! tell the cases apart.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::Deadline;

/// This process's pid, 0 until first asked (and again in a freshly forked child).
static PID: AtomicU32 = AtomicU32::new(0);
static AT_FORK: Once = Once::new();

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
    AT_FORK.call_once(|| {
        // SAFETY: registers a handler that only performs an atomic store; it may run in
        // the child of any fork, where only async-signal-safe work is allowed, which an
        // atomic store is.
        unsafe { libc::pthread_atfork(None, None, Some(forget_pid_in_child)) };
    });
    let p = std::process::id();
    PID.store(p, Ordering::Relaxed);
    p
}

/// Whether process `pid` has ended (exited and is a zombie, or is gone), waiting up to
/// `wait` for a process that is still running to end.
///
/// `pid == 0` (no owner recorded) counts as ended. The calling process never has. A pid
/// that is in use by a live process counts as running even if it was reused (the safe
/// direction: a lock is refused, never granted twice).
pub fn process_ended(pid: u32, wait: Duration) -> bool {
    if pid == 0 {
        return true;
    }
    if pid == self::pid() {
        return false;
    }
    if pid > i32::MAX as u32 {
        return true; // no process can have it (hostile or corrupt bytes)
    }
    // SAFETY: pidfd_open has no memory-safety preconditions; a non-negative result is a
    // fresh descriptor that nobody else owns.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ESRCH) => true,
            // No pidfd (old kernel, seccomp): kill(pid, 0) answers "exists" without the wait.
            _ => !exists(pid),
        };
    }
    // SAFETY: `fd` was just returned by pidfd_open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let end = Deadline::after(wait);
    loop {
        let ms = end.remaining().map_or(0, |r| r.as_millis().min(i32::MAX as u128) as libc::c_int);
        // SAFETY: `pfd` is one valid pollfd for the duration of the call.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r > 0 {
            // A pidfd polls readable once the whole process has exited.
            return pfd.revents & libc::POLLIN != 0;
        }
        if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) || end.passed() {
            return false;
        }
    }
}

/// Stop this process with `SIGSTOP`, for ever (every `SIGCONT` stops it again): the
/// body of the test hooks that freeze a peer at a chosen point until it is killed.
pub fn stop_forever() -> ! {
    loop {
        // SAFETY: raise has no memory-safety preconditions.
        unsafe { libc::raise(libc::SIGSTOP) };
    }
}

fn exists(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission; it sends nothing.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_never_ended_and_no_owner_has() {
        assert_eq!(pid(), std::process::id());
        assert!(!process_ended(pid(), Duration::ZERO));
        assert!(process_ended(0, Duration::ZERO));
    }

    #[test]
    fn a_reaped_child_has_ended_and_a_running_one_has_not() {
        let mut child = std::process::Command::new("sleep").arg("10").spawn().expect("spawn sleep");
        let p = child.id();
        assert!(!process_ended(p, Duration::from_millis(20)));
        child.kill().expect("kill");
        // A zombie (not yet reaped) has ended.
        let start = std::time::Instant::now();
        assert!(process_ended(p, Duration::from_secs(5)));
        assert!(start.elapsed() < Duration::from_secs(5));
        child.wait().expect("reap");
        assert!(process_ended(p, Duration::ZERO));
    }
}
