//! Standard-stream plumbing for children: a pipe whose read end never blocks, redirecting a
//! child's stderr into it, and reading whatever is there without waiting.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};

use nix::fcntl::OFlag;

/// A pipe `(read, write)`, both close-on-exec, the read end non-blocking (a reader that
/// drains it never waits).
pub fn pipe_nonblocking_reader() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let flags = nix::fcntl::fcntl(r.as_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(r.as_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))?;
    Ok((r, w))
}

/// In a forked child: make descriptor `fd` (given by number, inherited through the fork)
/// this process's stderr (`dup2(fd, 2)`), then close `fd`.
pub fn redirect_stderr(fd: RawFd) -> io::Result<()> {
    // SAFETY: the caller passes a descriptor it inherited and that stays open for this call.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    nix::unistd::dup2_stderr(borrowed)?;
    if fd != libc::STDERR_FILENO {
        super::process::close_raw(fd);
    }
    Ok(())
}

/// Read what a non-blocking descriptor holds now into `buf`, never waiting: `Some(0)` when it
/// holds nothing yet, `None` at end of file (every writer closed it). EINTR is retried.
pub fn read_available(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match nix::unistd::read(fd, buf) {
            Ok(0) if !buf.is_empty() => return Ok(None),
            Ok(n) => return Ok(Some(n)),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => return Ok(Some(0)),
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_pipe_reads_nothing_without_waiting_and_data_comes_through() {
        let (r, w) = pipe_nonblocking_reader().unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(read_available(r.as_fd(), &mut buf).unwrap(), Some(0));
        nix::unistd::write(&w, b"last words").unwrap();
        assert_eq!(read_available(r.as_fd(), &mut buf).unwrap(), Some(10));
        assert_eq!(&buf[..10], b"last words");
        drop(w);
        assert_eq!(read_available(r.as_fd(), &mut buf).unwrap(), None);
    }
}
