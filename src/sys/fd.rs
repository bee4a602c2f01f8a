//! File-descriptor level calls: POSIX shared memory, memfd, sizing, seals and `flock`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{self, FcntlArg, FdFlag, OFlag, SealFlag};
use nix::sys::memfd::{self, MFdFlags};
use nix::sys::stat::{self, Mode};
use nix::sys::{mman, statvfs};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

/// Retry a call while it fails with `EINTR`.
fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// `shm_open(name, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, mode)`.
///
/// `O_NONBLOCK` so that whatever sits at the name (anyone may plant a FIFO in the
/// world-writable `/dev/shm`) the open itself never blocks; it changes nothing for the
/// regular files shared memory lives in. `O_NOFOLLOW` refuses a symlink at the name
/// (`ELOOP`). The caller must `fstat` the result and refuse anything but a regular file.
pub fn shm_open(name: &str, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    retry(|| Ok(mman::shm_open(name, flags, Mode::from_bits_retain(mode))?))
}

/// `shm_unlink(name)`.
pub fn shm_unlink(name: &str) -> io::Result<()> {
    Ok(mman::shm_unlink(name)?)
}

/// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)`.
pub fn memfd_create(name: &str) -> io::Result<OwnedFd> {
    Ok(memfd::memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?)
}

fn off_t(n: u64, too_big: Errno) -> io::Result<libc::off_t> {
    libc::off_t::try_from(n).map_err(|_| io::Error::from(too_big))
}

/// Set the file size.
pub fn ftruncate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let len = off_t(len, Errno::EFBIG)?;
    retry(|| Ok(nix::unistd::ftruncate(fd, len)?))
}

/// Reserve backing memory for `[0, len)` so later page faults cannot SIGBUS for lack of space.
pub fn fallocate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let len = off_t(len, Errno::EFBIG)?;
    retry(|| Ok(fcntl::posix_fallocate(fd, 0, len)?))
}

/// `fstat`: the file's metadata.
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    Ok(stat::fstat(fd)?)
}

/// `stat` of a path (no symlink following); `None` when it does not exist.
pub fn lstat(path: &str) -> io::Result<Option<libc::stat>> {
    match stat::lstat(path) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Total size in bytes of the filesystem holding `path` (`statvfs`).
pub fn fs_capacity(path: &str) -> io::Result<u64> {
    let st = statvfs::statvfs(path)?;
    Ok((st.blocks() as u64).saturating_mul(st.fragment_size() as u64))
}

/// Seal a memfd against shrinking and growing, then seal the seals.
pub fn seal_size(fd: BorrowedFd<'_>) -> io::Result<()> {
    let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
    fcntl::fcntl(fd, FcntlArg::F_ADD_SEALS(seals))?;
    Ok(())
}

/// The seals currently on a descriptor (0 for files that cannot be sealed).
pub fn seals(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    match fcntl::fcntl(fd, FcntlArg::F_GET_SEALS) {
        Ok(s) => Ok(s),
        Err(Errno::EINVAL) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// A `flock` mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flock {
    /// `LOCK_SH`, blocking.
    Shared,
    /// `LOCK_SH | LOCK_NB`: fails with `WouldBlock` while anyone holds `LOCK_EX`.
    SharedNonBlocking,
    /// `LOCK_EX | LOCK_NB`: fails with `WouldBlock` when anyone holds the lock.
    ExclusiveNonBlocking,
    /// `LOCK_UN`.
    Unlock,
}

/// `flock` on the open file description behind `fd`.
pub fn flock(fd: BorrowedFd<'_>, mode: Flock) -> io::Result<()> {
    let op = match mode {
        Flock::Shared => libc::LOCK_SH,
        Flock::SharedNonBlocking => libc::LOCK_SH | libc::LOCK_NB,
        Flock::ExclusiveNonBlocking => libc::LOCK_EX | libc::LOCK_NB,
        Flock::Unlock => libc::LOCK_UN,
    };
    // SAFETY: plain syscall on a valid descriptor.
    retry(|| cvt(unsafe { libc::flock(fd.as_raw_fd(), op) })).map(drop)
}

/// Clear `FD_CLOEXEC` so a child started with `exec` inherits `fd`.
pub fn set_inheritable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = FdFlag::from_bits_retain(fcntl::fcntl(fd, FcntlArg::F_GETFD)?);
    fcntl::fcntl(fd, FcntlArg::F_SETFD(flags - FdFlag::FD_CLOEXEC))?;
    Ok(())
}

/// Fill `buf` from the kernel's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is a valid writable buffer of `rest.len()` bytes.
        let r = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += r as usize;
    }
    Ok(())
}

/// Read up to `buf.len()` bytes at `offset` without mapping the file (no SIGBUS on short files).
pub fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let off = off_t(offset, Errno::EINVAL)?;
    retry(|| Ok(nix::sys::uio::pread(fd, buf, off)?))
}

/// An open-file-description (OFD) write lock on the single byte at `offset` of the file
/// behind `fd` (`F_OFD_SETLK`, non-blocking): `Ok(true)` when taken, `Ok(false)` when
/// another open file description holds a conflicting lock.
///
/// OFD locks belong to the open file description, not to a process or thread: the lock
/// lasts while any descriptor (in any forked copy) refers to it, and goes when the last
/// one closes, including at process death.
pub fn ofd_lock_byte(fd: BorrowedFd<'_>, offset: i64) -> io::Result<bool> {
    let fl = ofd_byte(offset);
    match nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_OFD_SETLK(&fl)) {
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Whether an open file description other than `fd`'s holds a lock on the byte at
/// `offset` that would conflict with a write lock (`F_OFD_GETLK`).
pub fn ofd_byte_locked_elsewhere(fd: BorrowedFd<'_>, offset: i64) -> io::Result<bool> {
    let mut fl = ofd_byte(offset);
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_OFD_GETLK(&mut fl))?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// A write-lock request on one byte at `offset`, as OFD requests need it.
fn ofd_byte(offset: i64) -> libc::flock {
    // SAFETY: `flock` is a plain C struct; all-zero is a valid value (and required for
    // `l_pid`, which OFD requests must leave 0).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = offset;
    fl.l_len = 1;
    fl
}
