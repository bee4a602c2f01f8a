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
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use crate::sys;

/// Offset of token 0 (token `k` locks byte `TOKEN_BASE + k`).
const TOKEN_BASE: i64 = 1 << 40;

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
        let taken = sys::fd::ofd_lock_byte(file.as_fd(), token_offset(k))?;
        Ok(taken.then_some(Token { _file: file }))
    }
}

/// Whether an open file description other than `fd`'s holds token `k`.
pub(crate) fn is_held(fd: BorrowedFd<'_>, k: u32) -> io::Result<bool> {
    sys::fd::ofd_byte_locked_elsewhere(fd, token_offset(k))
}

/// The byte token `k` locks.
fn token_offset(k: u32) -> i64 {
    TOKEN_BASE + i64::from(k)
}
