//! Process-level calls: fork, exit, the parent-death signal, pidfds, waiting for children,
//! `poll`, eventfd doorbells, descriptor passing over a socket pair, and signals.
//!
//! `nix` provides the safe wrappers where it has one; `libc` is called directly for what
//! it lacks (`_exit`, `atexit`, pidfds) and where a raw descriptor number must be used
//! as is (`poll` ignores negative entries; a forked child rings a doorbell by number).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::sys::signal::{self, Signal};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

fn cvt_long(r: libc::c_long) -> io::Result<libc::c_long> {
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

/// `fork()` through glibc (which makes malloc usable in the child). `Ok(0)` in the child.
///
/// # Safety
///
/// The child must not depend on a lock another thread of the caller may hold at the instant
/// of the fork (it inherits the lock, not the thread): call this only while the process has
/// a single thread, or have the child run only code that takes no such lock.
pub unsafe fn fork() -> io::Result<libc::pid_t> {
    // SAFETY: the caller upholds the single-thread contract above.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Child => Ok(0),
        ForkResult::Parent { child } => Ok(child.as_raw()),
    }
}

/// In a fresh child: die with SIGKILL when the parent (thread) dies, and exit at once if the
/// parent died already between `fork` and here (then we were reparented and `getppid` changed).
pub fn die_with_parent(expected_parent: libc::pid_t) {
    // Cannot fail for a valid signal; the getppid check below covers the race either way.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if getppid() != expected_parent {
        exit_now(EXIT_ORPHANED);
    }
}

/// Exit code of a child whose parent was gone before it could start.
pub const EXIT_ORPHANED: i32 = 121;

/// `_exit(code)`: leave without running destructors or atexit handlers of inherited state.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is always safe to call.
    unsafe { libc::_exit(code) }
}

/// `getpid()` of the calling process (cached: see [`super::owner::pid`]).
/// Give the heap's free memory back to the system (glibc `malloc_trim(0)`): a process that
/// forks often (the pool's manager) then has fewer pages to copy page tables for per fork.
pub fn release_free_heap() {
    // SAFETY: malloc_trim has no preconditions; it only returns free heap pages to the kernel.
    unsafe { libc::malloc_trim(0) };
}

pub fn getpid() -> libc::pid_t {
    super::owner::pid() as libc::pid_t
}

/// `getppid()`: the parent of the calling process.
pub fn getppid() -> libc::pid_t {
    nix::unistd::getppid().as_raw()
}

/// `gettid()`: the kernel id of the calling thread.
pub fn gettid() -> libc::pid_t {
    nix::unistd::gettid().as_raw()
}

/// `kill(pid, SIGKILL)`. Only for our own unreaped children, whose pid cannot be reused.
pub fn kill_child(pid: libc::pid_t) {
    let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// Stop the calling process with `SIGSTOP`, for ever (until a `SIGCONT` or `SIGKILL`).
pub fn stop_self_forever() -> ! {
    loop {
        let _ = signal::raise(Signal::SIGSTOP);
    }
}

/// `PR_SET_CHILD_SUBREAPER`: orphaned descendants are reparented to us, not to init.
pub fn become_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)
}

/// `atexit(f)`: run `f` when the process exits through `exit` (not `_exit`).
pub fn at_exit(f: extern "C" fn()) {
    // SAFETY: registering a plain `extern "C" fn()` with atexit has no preconditions.
    unsafe { libc::atexit(f) };
}

/// `pidfd_open(pid)`: a descriptor that names this very process, immune to pid reuse.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = cvt_long(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: a successful pidfd_open returns a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_send_signal(pidfd, sig)`: signal the process the pidfd names (never a reused pid).
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall; a null siginfo is allowed.
    cvt_long(unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), sig, std::ptr::null::<libc::siginfo_t>(), 0)
    })
    .map(drop)
}

/// `ppoll` on `fds` for readability; returns which are ready. `None` timeout waits for ever;
/// a timeout is kept to the nanosecond (a deadline is not rounded to whole milliseconds).
/// Negative entries are ignored (never ready). EINTR counts as "nothing ready yet".
pub fn poll_readable(fds: &[RawFd], timeout: Option<Duration>, ready: &mut Vec<bool>) -> io::Result<()> {
    let mut pfds: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let tsp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `pfds` is a valid array of `pfds.len()` pollfd structs for the whole call; `tsp`
    // is null or points to `ts`, alive for the call; a null signal mask changes nothing.
    let r = unsafe { libc::ppoll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, tsp, std::ptr::null()) };
    ready.clear();
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    ready.extend(pfds.iter().map(|p| p.revents != 0));
    Ok(())
}

/// Whether process `pid` has ended (exited and is a zombie, or is gone), waiting up to
/// `wait` for a process that is still running to end (a killed process's threads die one
/// by one, and a large one takes a while to free its memory).
///
/// `pid == 0` (no owner recorded) counts as ended. The calling process never has. A pid
/// that is in use by a live process counts as running even if it was reused (the safe
/// direction: a lock is refused, never granted twice).
pub fn process_ended(pid: u32, wait: Duration) -> bool {
    if pid == 0 {
        return true;
    }
    if pid == super::owner::pid() {
        return false;
    }
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return true; // no process can have it (hostile or corrupt bytes)
    };
    let fd = match pidfd_open(raw) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return true,
        // No pidfd (old kernel, seccomp): kill(pid, 0) answers "exists" without the wait.
        Err(_) => return matches!(signal::kill(Pid::from_raw(raw), None), Err(nix::errno::Errno::ESRCH)),
    };
    let end = super::Deadline::after(wait);
    let mut ready = Vec::with_capacity(1);
    loop {
        // A pidfd polls readable once the whole process has exited.
        if poll_readable(&[fd.as_raw_fd()], end.remaining(), &mut ready).is_err() {
            return false;
        }
        if ready.first() == Some(&true) {
            return true;
        }
        if end.passed() {
            return false;
        }
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It called `exit(code)` (or returned from `main`).
    Code(i32),
    /// A signal killed it (9 = SIGKILL, 15 = SIGTERM, 6 = SIGABRT, …).
    Signal(i32),
}

impl ExitStatus {
    /// Decode a raw `waitpid` status.
    pub(crate) fn from_raw(status: libc::c_int) -> ExitStatus {
        if libc::WIFSIGNALED(status) {
            ExitStatus::Signal(libc::WTERMSIG(status))
        } else {
            ExitStatus::Code(libc::WEXITSTATUS(status))
        }
    }

    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }

    /// The signal that killed it, if any.
    pub fn signal(&self) -> Option<i32> {
        match *self {
            ExitStatus::Signal(s) => Some(s),
            ExitStatus::Code(_) => None,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s} ({})", signal_name(s)),
        }
    }
}

/// A short name for a signal number.
///
/// ```
/// assert_eq!(shmkit::process::signal_name(9), "SIGKILL");
/// assert_eq!(shmkit::process::signal_name(12345), "signal");
/// ```
pub fn signal_name(sig: i32) -> &'static str {
    // nix carries the platform's full signal table (SIGCHLD, SIGSYS, SIGXCPU, …).
    nix::sys::signal::Signal::try_from(sig).map_or("signal", |s| s.as_str())
}

impl ExitStatus {
    /// From a `waitpid`/`waitid` result; `None` when the child has not ended.
    fn from_wait(status: WaitStatus) -> Option<ExitStatus> {
        match status {
            WaitStatus::Exited(_, code) => Some(ExitStatus::Code(code)),
            WaitStatus::Signaled(_, sig, _) => Some(ExitStatus::Signal(sig as i32)),
            _ => None,
        }
    }
}

/// `waitpid(pid, flags | __WALL)` on our own child, retried on EINTR.
fn waitpid(pid: libc::pid_t, flags: WaitPidFlag) -> io::Result<WaitStatus> {
    loop {
        match nix::sys::wait::waitpid(Pid::from_raw(pid), Some(flags | WaitPidFlag::__WALL)) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

/// `waitpid(pid, WNOHANG)` on our own child: `Some(status)` once it has ended (and is reaped).
pub fn try_reap(pid: libc::pid_t) -> io::Result<Option<ExitStatus>> {
    waitpid(pid, WaitPidFlag::WNOHANG).map(ExitStatus::from_wait)
}

/// `waitpid(pid, 0)`: block until our child `pid` ends, and reap it.
pub fn reap_blocking(pid: libc::pid_t) -> io::Result<ExitStatus> {
    loop {
        if let Some(s) = ExitStatus::from_wait(waitpid(pid, WaitPidFlag::empty())?) {
            return Ok(s);
        }
    }
}

/// The pid of some child that has ended and is not reaped yet, without reaping it
/// (`waitid(P_ALL, WEXITED | WNOHANG | WNOWAIT)`); `None` when there is none.
pub fn peek_ended_child() -> Option<libc::pid_t> {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    nix::sys::wait::waitid(Id::All, flags).ok()?.pid().map(Pid::as_raw).filter(|&p| p != 0)
}

/// A non-blocking `eventfd` (a doorbell another process can `poll`).
pub fn eventfd() -> io::Result<OwnedFd> {
    use nix::sys::eventfd::{EfdFlags, EventFd};
    let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
    Ok(OwnedFd::from(efd))
}

/// Ring an eventfd given by number (a forked child holds the number, not an owner).
pub fn eventfd_ring(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64; a full counter (EAGAIN) still leaves it readable.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

/// Drain an eventfd given by number (non-blocking).
pub fn eventfd_drain(fd: RawFd) {
    let mut v: u64 = 0;
    // SAFETY: reads at most 8 bytes into a live u64.
    unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
}

/// A `SOCK_SEQPACKET` socket pair (message boundaries kept, descriptors passable).
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    Ok(socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?)
}

/// Most descriptors one message carries.
pub const MAX_FDS: usize = 4;

/// Send `data` plus `fds` (SCM_RIGHTS) as one message.
pub fn send_with_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, UnixAddr, sendmsg};
    if fds.len() > MAX_FDS {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let iov = [io::IoSlice::new(data)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs = if fds.is_empty() { &rights[..0] } else { &rights[..] };
    loop {
        match sendmsg::<UnixAddr>(sock, &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receive one message into `buf`; returns its length (0: peer closed) and the descriptors it carried.
pub fn recv_with_fds(sock: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixAddr, recvmsg};
    let mut cbuf = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = loop {
        match recvmsg::<UnixAddr>(sock, &mut iov, Some(&mut cbuf), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(m) => break m,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(got) = c {
            // SAFETY: each descriptor received with SCM_RIGHTS is new and ours alone.
            fds.extend(got.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    Ok((msg.bytes, fds))
}

/// Number of threads in this process (from `/proc/self/stat`), `None` if unreadable.
pub fn thread_count() -> Option<usize> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; num_threads is field 20 overall.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(17)?.parse().ok()
}

/// Close a raw descriptor this process will never use again (in a forked child only,
/// where the owning object is never dropped because the child leaves through `_exit`).
pub fn close_raw(fd: RawFd) {
    let _ = nix::unistd::close(fd);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_never_ended_and_no_owner_has() {
        assert!(!process_ended(super::super::owner::pid(), Duration::ZERO));
        assert!(process_ended(0, Duration::ZERO));
        assert!(process_ended(u32::MAX, Duration::ZERO));
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
