//! File-descriptor level calls: POSIX shared memory, memfd, sizing, seals and `flock`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

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

fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// `shm_open(name, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, mode)`.
///
/// `O_NONBLOCK` so that whatever sits at the name (anyone may plant a FIFO in the
/// world-writable `/dev/shm`) the open itself never blocks; it changes nothing for the
/// regular files shared memory lives in. `O_NOFOLLOW` refuses a symlink at the name
/// (`ELOOP`). The caller must `fstat` the result and refuse anything but a regular file.
pub fn shm_open(name: &str, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let c = c_name(name)?;
    let flags = flags | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
    let fd = retry(|| {
        // SAFETY: `c` is a NUL-terminated string that outlives the call.
        cvt(unsafe { libc::shm_open(c.as_ptr(), flags, mode as libc::c_uint) })
    })?;
    // SAFETY: `fd` was just returned by a successful shm_open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `shm_unlink(name)`.
pub fn shm_unlink(name: &str) -> io::Result<()> {
    let c = c_name(name)?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    cvt(unsafe { libc::shm_unlink(c.as_ptr()) }).map(drop)
}

/// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)`.
pub fn memfd_create(name: &str) -> io::Result<OwnedFd> {
    let c = c_name(name)?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    let fd = cvt(unsafe { libc::memfd_create(c.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) })?;
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Set the file size.
pub fn ftruncate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: plain syscall on a valid descriptor.
    retry(|| cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), len) })).map(drop)
}

/// Reserve backing memory for `[0, len)` so later page faults cannot SIGBUS for lack of space.
pub fn fallocate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    loop {
        // SAFETY: plain syscall on a valid descriptor; posix_fallocate returns the error number.
        let r = unsafe { libc::posix_fallocate(fd.as_raw_fd(), 0, len) };
        match r {
            0 => return Ok(()),
            libc::EINTR => continue,
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// `fstat`: the file's metadata.
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid writable stat buffer; `fd` is a valid descriptor.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// `stat` of a path (no symlink following); `None` when it does not exist.
pub fn lstat(path: &str) -> io::Result<Option<libc::stat>> {
    let c = c_name(path)?;
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` writable, both outlive the call.
    match cvt(unsafe { libc::lstat(c.as_ptr(), &mut st) }) {
        Ok(_) => Ok(Some(st)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Total size in bytes of the filesystem holding `path` (`statvfs`).
pub fn fs_capacity(path: &str) -> io::Result<u64> {
    let c = c_name(path)?;
    // SAFETY: an all-zero `statvfs` is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` writable, both outlive the call.
    cvt(unsafe { libc::statvfs(c.as_ptr(), &mut st) })?;
    Ok((st.f_blocks as u64).saturating_mul(st.f_frsize as u64))
}

/// Seal a memfd against shrinking and growing, then seal the seals.
pub fn seal_size(fd: BorrowedFd<'_>) -> io::Result<()> {
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: F_ADD_SEALS takes an int argument; `fd` is a valid memfd.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) }).map(drop)
}

/// The seals currently on a descriptor (0 for files that cannot be sealed).
pub fn seals(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: F_GET_SEALS takes no argument; `fd` is a valid descriptor.
    match cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) }) {
        Ok(s) => Ok(s),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(0),
        Err(e) => Err(e),
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
    // SAFETY: F_GETFD/F_SETFD on a valid descriptor.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, flags & !libc::FD_CLOEXEC) }).map(drop)
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
    let off = libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    retry(|| {
        // SAFETY: `buf` is a valid writable buffer of `buf.len()` bytes; `fd` is valid.
        let r = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), off) };
        if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r as usize) }
    })
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
