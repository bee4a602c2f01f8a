//! Liveness tokens without pids: an open-file-description (OFD) lock on one byte of the
//! segment file, taken through a private open file description.
//!
//! OFD locks (`F_OFD_SETLK`) belong to an open file description, not to a process or a
//! thread: the lock lives as long as any descriptor refers to that description, whichever
//! thread or forked child holds it, and the kernel drops it when the last one closes —
//! including when the process dies. Any other description of the same file sees it with
//! `F_OFD_GETLK`. That is Python's `Pipe` semantics exactly: a connection is hung up when
//! every copy of its end (the parent's and forked children's) is closed.
//!
//! The token bytes lie far past the end of the file (locks may cover any offset), so they
//! never interact with data or with the `flock` that marks the segment live.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Offset of token 0 (token `k` locks byte `TOKEN_BASE + k`).
const TOKEN_BASE: i64 = 1 << 40;

fn lock_struct(kind: i32, k: u32) -> libc::flock {
    // SAFETY: `flock` is a plain C struct; all-zero is a valid value (and required for
    // `l_pid`, which OFD requests must leave 0).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = TOKEN_BASE + i64::from(k);
    fl.l_len = 1;
    fl
}

/// A held token: a private open file description with a write lock on token byte `k`.
/// Dropping it closes the description (the lock goes when no forked copy holds it).
#[derive(Debug)]
pub(crate) struct Token {
    _file: File,
}

impl Token {
    /// Reopen the file behind `fd` (a new open file description) and lock token `k`;
    /// `Ok(None)` when another description holds it.
    pub(crate) fn acquire(fd: BorrowedFd<'_>, k: u32) -> io::Result<Option<Token>> {
        // A new open file description of the same file (works for memfds too). std opens
        // with O_CLOEXEC, so an exec'd program does not inherit the token.
        let file =
            std::fs::OpenOptions::new().read(true).write(true).open(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        let fl = lock_struct(libc::F_WRLCK, k);
        // SAFETY: F_OFD_SETLK reads a valid `flock` that outlives the call; the descriptor
        // is open.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
        if r == 0 {
            return Ok(Some(Token { _file: file }));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(None),
            _ => Err(e),
        }
    }
}

/// Whether an open file description other than `fd`'s holds token `k`.
pub(crate) fn is_held(fd: BorrowedFd<'_>, k: u32) -> io::Result<bool> {
    let mut fl = lock_struct(libc::F_WRLCK, k);
    // SAFETY: F_OFD_GETLK reads and writes a valid `flock` that outlives the call.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}
