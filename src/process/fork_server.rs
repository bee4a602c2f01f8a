//! The fork server: a single-threaded helper process, forked while this process had only
//! one thread, that forks children on request, so that a process with threads can still
//! start children that cannot inherit a lock held by another thread.
//!
//! # Protocol
//!
//! One `SOCK_SEQPACKET` socket pair between this process and the server. A request is
//! `[entry: u64, arg: u64]` plus descriptors (`SCM_RIGHTS`): the child's segment first, then
//! extra descriptors handed to the entry. The server maps the segment, forks; the child sets
//! `PR_SET_PDEATHSIG(SIGKILL)` (checking `getppid` for the race), runs `entry(segment, arg,
//! extra_fds)` and `_exit`s with its result. The server replies `[errno: i32, pid: i32]` plus the
//! child's pidfd, watches the child's pidfd, reaps it when it ends and writes its wait status
//! into the exit record at the start of the segment (then wakes futex waiters).
//!
//! The server dies with this process (`PR_SET_PDEATHSIG` on the thread that started it, which
//! must therefore live as long as the process: `main`, or before `main`), and its children die
//! with it. Children start from the server's memory snapshot, taken when it was started:
//! pass everything they need as arguments.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::ProcessError;
use super::entry::{EXIT_RECORD_LEN, Entry, ExitRecord, run_entry};
use crate::segment::Segment;
use crate::sys::process::{self as os, MAX_FDS};

struct Conn {
    sock: OwnedFd,
    pidfd: OwnedFd,
    pid: libc::pid_t,
    /// The process that started the server; forks of it must not use the connection.
    owner: libc::pid_t,
}

static SERVER: Mutex<Option<Conn>> = Mutex::new(None);

/// Start the fork server for this process (idempotent).
///
/// Call it while the process has a single thread — first thing in `main` — from the main
/// thread. Returns [`ProcessError::ThreadsExist`] otherwise.
///
/// ```
/// // In a real program this is the first line of main. Doc tests run single-threaded.
/// match shmkit::process::fork_server::start() {
///     Ok(()) => assert!(shmkit::process::fork_server::is_running()),
///     Err(shmkit::process::ProcessError::ThreadsExist { .. }) => {} // too late in this process
///     Err(e) => panic!("{e}"),
/// }
/// ```
pub fn start() -> Result<(), ProcessError> {
    match os::thread_count() {
        Some(1) => start_unchecked(),
        n => {
            if is_running() {
                return Ok(());
            }
            Err(ProcessError::ThreadsExist { threads: n.unwrap_or(0) })
        }
    }
}

/// Start the server from a constructor that runs before `main` (single-threaded by
/// construction). Used by [`fork_server_at_load!`](crate::fork_server_at_load).
#[doc(hidden)]
pub fn start_at_load() {
    let _ = start_unchecked();
}

/// Whether a fork server runs for this very process.
pub fn is_running() -> bool {
    let guard = SERVER.lock().unwrap_or_else(PoisonError::into_inner);
    guard.as_ref().is_some_and(|c| c.owner == os::getpid())
}

fn start_unchecked() -> Result<(), ProcessError> {
    let mut guard = SERVER.lock().unwrap_or_else(PoisonError::into_inner);
    let me = os::getpid();
    if guard.as_ref().is_some_and(|c| c.owner == me) {
        return Ok(());
    }
    let (ours, theirs) = os::seqpacket_pair().map_err(|e| ProcessError::os("socketpair", e))?;
    // SAFETY: `start` checked that this process has a single thread, or `start_at_load`
    // runs from an ELF constructor, before `main` and any thread.
    let pid = unsafe { os::fork() }.map_err(|e| ProcessError::os("fork", e))?;
    if pid == 0 {
        // The server: forget the client side (including the lock we hold in the copy).
        *guard = None;
        drop(guard);
        os::die_with_parent(me);
        os::close_raw(ours.as_raw_fd());
        std::mem::forget(ours);
        serve(theirs);
    }
    drop(theirs);
    let pidfd = os::pidfd_open(pid).map_err(|e| ProcessError::os("pidfd_open", e))?;
    *guard = Some(Conn { sock: ours, pidfd, pid, owner: me });
    os::at_exit(stop_at_exit);
    Ok(())
}

/// At exit: close our end (the server then kills and reaps its children and exits), and
/// reap the server, so that no process of ours outlives us as a zombie.
extern "C" fn stop_at_exit() {
    let Ok(mut guard) = SERVER.try_lock() else { return };
    let Some(conn) = guard.take().filter(|c| c.owner == os::getpid()) else { return };
    drop(conn.sock);
    let mut ready = Vec::new();
    let _ = os::poll_readable(&[conn.pidfd.as_raw_fd()], Some(Duration::from_secs(2)), &mut ready);
    if ready.first() != Some(&true) {
        // Our own unreaped child: the pid cannot have been reused.
        os::kill_child(conn.pid);
    }
    let _ = os::reap_blocking(conn.pid);
}

/// Start the fork server before `main` runs, from an ELF constructor in your binary.
///
/// For programs whose `main` you do not write — test harnesses above all, where libtest
/// starts threads before any test runs. Put it once at the top level of the binary crate
/// (for example of each `tests/*.rs` file that starts processes).
///
/// ```
/// shmkit::fork_server_at_load!();
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! fork_server_at_load {
    () => {
        #[used]
        #[unsafe(link_section = ".init_array")]
        static __SHMKIT_FORK_SERVER_AT_LOAD: extern "C" fn() = {
            extern "C" fn __shmkit_start_fork_server() {
                $crate::process::fork_server::start_at_load();
            }
            __shmkit_start_fork_server
        };
    };
}

const REQ_LEN: usize = 16;
const REPLY_LEN: usize = 8;

/// Ask the server to fork a child; returns its pid and pidfd.
pub(crate) fn spawn(
    seg: &Segment,
    entry: Entry,
    arg: u64,
    fds: &[RawFd],
) -> Result<(libc::pid_t, OwnedFd), ProcessError> {
    let guard = SERVER.lock().unwrap_or_else(PoisonError::into_inner);
    let conn = guard.as_ref().filter(|c| c.owner == os::getpid()).ok_or(ProcessError::NoForkServer)?;
    let died = |reason: String| ProcessError::ForkServerDied { reason };
    let mut req = [0u8; REQ_LEN];
    req[..8].copy_from_slice(&(entry as usize as u64).to_ne_bytes());
    req[8..].copy_from_slice(&arg.to_ne_bytes());
    let mut all = vec![seg.fd().as_raw_fd()];
    all.extend_from_slice(fds);
    os::send_with_fds(conn.sock.as_raw_fd(), &req, &all).map_err(|e| died(format!("send: {e}")))?;
    let mut ready = Vec::new();
    os::poll_readable(&[conn.sock.as_raw_fd(), conn.pidfd.as_raw_fd()], Some(Duration::from_secs(10)), &mut ready)
        .map_err(|e| ProcessError::os("poll", e))?;
    if ready.first() != Some(&true) {
        return Err(died("no reply within 10 s".into()));
    }
    let mut reply = [0u8; REPLY_LEN];
    let (n, mut got) = os::recv_with_fds(conn.sock.as_raw_fd(), &mut reply).map_err(|e| died(format!("recv: {e}")))?;
    if n != REPLY_LEN {
        return Err(died("connection closed".into()));
    }
    let errno = i32::from_ne_bytes([reply[0], reply[1], reply[2], reply[3]]);
    let pid = i32::from_ne_bytes([reply[4], reply[5], reply[6], reply[7]]);
    if errno != 0 {
        return Err(ProcessError::os("fork (in the fork server)", std::io::Error::from_raw_os_error(errno)));
    }
    let pidfd = got.pop().ok_or_else(|| died("reply without a pidfd".into()))?;
    Ok((pid, pidfd))
}

struct Kid {
    pid: libc::pid_t,
    pidfd: OwnedFd,
    seg: Segment,
}

/// The server loop (in the server process; never returns).
fn serve(sock: OwnedFd) -> ! {
    let me = os::getpid();
    // Orphans of our children (workers whose manager was killed) come to us, not to init,
    // and are reaped below.
    let _ = os::become_subreaper();
    let mut kids: Vec<Kid> = Vec::new();
    let mut ready = Vec::new();
    let mut fds = Vec::new();
    loop {
        fds.clear();
        fds.push(sock.as_raw_fd());
        fds.extend(kids.iter().map(|k| k.pidfd.as_raw_fd()));
        if os::poll_readable(&fds, Some(Duration::from_secs(1)), &mut ready).is_err() {
            os::exit_now(1);
        }
        reap_orphans(&kids);
        // Children first, so their pidfds are gone before we fork again.
        let mut i = kids.len();
        while i > 0 {
            i -= 1;
            if ready.get(i + 1) == Some(&true)
                && let Ok(Some(status)) = os::try_reap(kids[i].pid)
            {
                let kid = kids.swap_remove(i);
                ExitRecord::of(&kid.seg).publish(status);
            }
        }
        if ready.first() == Some(&true) {
            let mut req = [0u8; REQ_LEN];
            match os::recv_with_fds(sock.as_raw_fd(), &mut req) {
                Ok((0, _)) | Err(_) => {
                    // The client process is exiting or gone: take our children with us.
                    for k in &kids {
                        let _ = os::pidfd_send_signal(k.pidfd.as_fd(), libc::SIGKILL);
                    }
                    for k in &kids {
                        let _ = os::reap_blocking(k.pid);
                    }
                    os::exit_now(0)
                }
                Ok((n, got)) if n == REQ_LEN && !got.is_empty() && got.len() <= MAX_FDS => {
                    let reply = serve_one(me, &sock, &kids, &req, got);
                    let (errno, kid) = match reply {
                        Ok(kid) => (0, Some(kid)),
                        Err(e) => (e.raw_os_error().unwrap_or(libc::EIO), None),
                    };
                    let mut out = [0u8; REPLY_LEN];
                    out[..4].copy_from_slice(&errno.to_ne_bytes());
                    out[4..].copy_from_slice(&kid.as_ref().map_or(0, |k| k.pid).to_ne_bytes());
                    let pidfd = kid.as_ref().map(|k| k.pidfd.as_raw_fd());
                    let _ = os::send_with_fds(sock.as_raw_fd(), &out, pidfd.as_slice());
                    kids.extend(kid);
                }
                Ok(_) => {
                    let out = [0u8; REPLY_LEN];
                    let mut bad = out;
                    bad[..4].copy_from_slice(&libc::EINVAL.to_ne_bytes());
                    let _ = os::send_with_fds(sock.as_raw_fd(), &bad, &[]);
                }
            }
        }
    }
}

/// Reap ended processes that are not children we forked (reparented orphans).
fn reap_orphans(kids: &[Kid]) {
    while let Some(pid) = os::peek_ended_child() {
        if kids.iter().any(|k| k.pid == pid) {
            return;
        }
        let _ = os::try_reap(pid);
    }
}

fn serve_one(
    me: libc::pid_t,
    sock: &OwnedFd,
    kids: &[Kid],
    req: &[u8; REQ_LEN],
    mut got: Vec<OwnedFd>,
) -> std::io::Result<Kid> {
    let entry_addr = u64::from_ne_bytes(req[..8].try_into().unwrap_or_default());
    let arg = u64::from_ne_bytes(req[8..].try_into().unwrap_or_default());
    let seg_fd = got.remove(0);
    let seg = Segment::from_fd(seg_fd).map_err(std::io::Error::other)?;
    if seg.len() < EXIT_RECORD_LEN {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    let extra: Vec<RawFd> = got.iter().map(|f| f.as_raw_fd()).collect();
    // SAFETY: the fork server is single-threaded (forked from a single-threaded process,
    // it never starts a thread).
    let pid = unsafe { os::fork() }?;
    if pid == 0 {
        os::die_with_parent(me);
        os::close_raw(sock.as_raw_fd());
        for k in kids {
            os::close_raw(k.pidfd.as_raw_fd());
        }
        // SAFETY: the only client is the process that started this server (a socket pair
        // nobody else holds), and it sends the address of an `Entry` fn item of this same
        // binary image, which this fork of it shares.
        let entry: Entry = unsafe { std::mem::transmute::<usize, Entry>(entry_addr as usize) };
        run_entry(entry, &seg, arg, &extra);
    }
    let pidfd = match os::pidfd_open(pid) {
        Ok(p) => p,
        Err(e) => {
            // Our own unreaped child: the pid cannot have been reused.
            os::kill_child(pid);
            let _ = os::reap_blocking(pid);
            return Err(e);
        }
    };
    // The reply carries a duplicate (SCM_RIGHTS); we keep ours to watch the child.
    drop(got);
    Ok(Kid { pid, pidfd, seg })
}
