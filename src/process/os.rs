//! Thin system-call wrappers for the process layer: fork, pidfd, poll, wait, eventfd,
//! descriptor passing. Each `unsafe` block names what it relies on.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

fn cvt_long(r: libc::c_long) -> io::Result<libc::c_long> {
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

/// `fork()` through glibc (which makes malloc usable in the child). `Ok(0)` in the child.
pub(crate) fn fork() -> io::Result<libc::pid_t> {
    // SAFETY: fork has no memory-safety preconditions; callers restrict what the child runs.
    cvt(unsafe { libc::fork() })
}

/// In a fresh child: die with SIGKILL when the parent (thread) dies, and exit at once if the
/// parent died already between `fork` and here (then we were reparented and `getppid` changed).
pub(crate) fn die_with_parent(expected_parent: libc::pid_t) {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number; no memory is passed.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) };
    // SAFETY: getppid cannot fail.
    if unsafe { libc::getppid() } != expected_parent {
        exit_now(EXIT_ORPHANED);
    }
}

/// Exit code of a child whose parent was gone before it could start.
pub(crate) const EXIT_ORPHANED: i32 = 121;

/// `_exit(code)`: leave without running destructors or atexit handlers of inherited state.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is always safe to call.
    unsafe { libc::_exit(code) }
}

/// `getpid()` of the calling process.
pub(crate) fn getpid() -> libc::pid_t {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

/// `pidfd_open(pid)`: a descriptor that names this very process, immune to pid reuse.
pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = cvt_long(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: a successful pidfd_open returns a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_send_signal(pidfd, sig)`: signal the process the pidfd names (never a reused pid).
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall; a null siginfo is allowed.
    cvt_long(unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), sig, std::ptr::null::<libc::siginfo_t>(), 0)
    })
    .map(drop)
}

/// `poll` on `fds` for readability; returns which are ready. `None` timeout waits for ever.
/// EINTR counts as "nothing ready yet".
pub(crate) fn poll_readable(fds: &[RawFd], timeout: Option<Duration>, ready: &mut Vec<bool>) -> io::Result<()> {
    let mut pfds: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    let ms = match timeout {
        None => -1,
        Some(t) => t.as_millis().min(i32::MAX as u128) as libc::c_int,
    };
    // SAFETY: `pfds` is a valid array of `pfds.len()` pollfd structs for the whole call.
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
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

/// `waitpid(pid, WNOHANG)` on our own child: `Some(status)` once it has ended (and is reaped).
pub(crate) fn try_reap(pid: libc::pid_t) -> io::Result<Option<ExitStatus>> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer; `pid` is our own unreaped child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::__WALL) };
        if r == pid {
            return Ok(Some(ExitStatus::from_raw(status)));
        }
        if r == 0 {
            return Ok(None);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `waitpid(pid, 0)`: block until our child `pid` ends, and reap it.
pub(crate) fn reap_blocking(pid: libc::pid_t) -> io::Result<ExitStatus> {
    let mut status = 0;
    loop {
        // SAFETY: as in `try_reap`.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r == pid {
            return Ok(ExitStatus::from_raw(status));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A non-blocking `eventfd` (a doorbell another process can `poll`).
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Ring an eventfd.
pub(crate) fn eventfd_ring(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64; a full counter (EAGAIN) still leaves it readable.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

/// Drain an eventfd (non-blocking).
pub(crate) fn eventfd_drain(fd: RawFd) {
    let mut v: u64 = 0;
    // SAFETY: reads at most 8 bytes into a live u64.
    unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
}

/// A `SOCK_SEQPACKET` socket pair (message boundaries kept, descriptors passable).
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) })?;
    // SAFETY: two new descriptors nobody else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Most descriptors one message carries.
pub(crate) const MAX_FDS: usize = 4;

/// Send `data` plus `fds` (SCM_RIGHTS) as one message.
pub(crate) fn send_with_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    assert!(fds.len() <= MAX_FDS);
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    let mut cbuf = [0u64; 8];
    // SAFETY: an all-zero msghdr is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let payload = std::mem::size_of_val(fds) as u32;
        // SAFETY: CMSG_SPACE is a pure size computation.
        let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: `cbuf` (64 bytes, 8-aligned) holds CMSG_SPACE of up to MAX_FDS ints, so the
        // first header and its data lie inside it; CMSG_* only compute addresses in it.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(payload) as usize;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast::<RawFd>(), fds.len());
        }
    }
    loop {
        // SAFETY: `msg` points to live iovec and control buffers for the duration of the call.
        let r = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
        if r >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receive one message into `buf`; returns its length (0: peer closed) and the descriptors it carried.
pub(crate) fn recv_with_fds(sock: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut cbuf = [0u64; 8];
    // SAFETY: an all-zero msghdr is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    let n = loop {
        // SAFETY: `msg` points to live, writable buffers of the stated sizes.
        let r = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if r >= 0 {
            break r as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `msg_control` with well-formed headers within
    // `msg_controllen`; CMSG_FIRSTHDR/NXTHDR stay inside it and return null at the end.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    // Each received descriptor is new and ours alone.
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n, fds))
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
pub(crate) fn close_raw(fd: RawFd) {
    // SAFETY: closing a descriptor has no memory-safety consequence; the caller guarantees
    // no live object will close or use this number again.
    unsafe { libc::close(fd) };
}
