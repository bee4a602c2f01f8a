//! The file under a segment: opening whatever sits at a name without blocking, refusing
//! anything but a regular file, the bounded shared `flock`, creating and sizing.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use super::{MAX_SEGMENT_LEN, SegmentError, SegmentOptions, name};
use crate::sys::fd as sysfd;

/// What sits at a name when it is not a regular file.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A named pipe: opening one for reading blocks until a writer comes.
    Fifo,
    /// A directory.
    Directory,
    /// A unix-domain socket.
    Socket,
    /// A symbolic link (never followed: it could point anywhere).
    Symlink,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// Any other non-regular file.
    Other,
}

impl FileKind {
    /// What a `st_mode` describes; `None` for a regular file.
    pub fn from_mode(mode: libc::mode_t) -> Option<FileKind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => return None,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFDIR => FileKind::Directory,
            libc::S_IFSOCK => FileKind::Socket,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFCHR => FileKind::CharDevice,
            libc::S_IFBLK => FileKind::BlockDevice,
            _ => FileKind::Other,
        })
    }
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileKind::Fifo => "FIFO",
            FileKind::Directory => "directory",
            FileKind::Socket => "unix socket",
            FileKind::Symlink => "symbolic link",
            FileKind::CharDevice => "character device",
            FileKind::BlockDevice => "block device",
            FileKind::Other => "special file",
        })
    }
}

/// Sparse (not reserving) segments up to this size skip the `/dev/shm` capacity check.
const SPARSE_CHECK_ABOVE: u64 = 64 << 20;

/// How long an open waits for the creator of an empty file to size it. Creators size the
/// file right after `shm_open` (one `flock`, one `ftruncate`), so this is generous.
pub(super) const EMPTY_GRACE: Duration = Duration::from_millis(200);

/// Polling with a growing pause (50 µs doubling to 5 ms) until a limit.
pub(super) struct Poll {
    start: Instant,
    pause: Duration,
}

impl Poll {
    pub(super) fn new() -> Poll {
        Poll { start: Instant::now(), pause: Duration::from_micros(50) }
    }

    /// Sleep before the next try, or `Err(waited)` once `limit` has passed since `new`.
    pub(super) fn wait(&mut self, limit: Duration) -> Result<(), Duration> {
        let waited = self.start.elapsed();
        if waited >= limit {
            return Err(waited);
        }
        std::thread::sleep(self.pause.min(limit - waited));
        self.pause = (self.pause * 2).min(Duration::from_millis(5));
        Ok(())
    }
}

/// `Err(SpecialFile)` unless `st` describes a regular file.
pub(super) fn refuse_special(name: &str, st: &libc::stat) -> Result<(), SegmentError> {
    match FileKind::from_mode(st.st_mode) {
        None => Ok(()),
        Some(what) => Err(SegmentError::SpecialFile { name: name.to_owned(), what }),
    }
}

pub(super) fn fstat(fd: BorrowedFd<'_>, name: &str) -> Result<libc::stat, SegmentError> {
    sysfd::fstat(fd).map_err(|e| SegmentError::io("fstat", name, e))
}

/// Open whatever sits at the (normalized) `name` without blocking (`O_NONBLOCK`, no
/// symlink following) and refuse anything but a regular file, saying what it is.
pub(super) fn open_existing(name: &str, flags: libc::c_int) -> Result<(OwnedFd, libc::stat), SegmentError> {
    let fd = match sysfd::shm_open(name, flags, 0) {
        Ok(fd) => fd,
        Err(e) => {
            // A symlink (ELOOP), a directory (EISDIR, EINVAL), a socket (ENXIO): say what it is.
            if let Ok(Some(st)) = sysfd::lstat(&name::dev_shm_path(name)) {
                refuse_special(name, &st)?;
            }
            return Err(open_error(name, "shm_open", e));
        }
    };
    let st = fstat(fd.as_fd(), name)?;
    refuse_special(name, &st)?;
    Ok((fd, st))
}

/// Take `LOCK_SH` (the liveness token), waiting at most `timeout` for a holder of
/// `LOCK_EX` (`gc` checking staleness, or a hostile process holding it for ever).
pub(super) fn lock_shared(fd: BorrowedFd<'_>, name: &str, timeout: Duration) -> Result<(), SegmentError> {
    let mut poll = Poll::new();
    loop {
        match sysfd::flock(fd, sysfd::Flock::SharedNonBlocking) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(SegmentError::io("flock", name, e)),
        }
        poll.wait(timeout).map_err(|waited| SegmentError::Locked { name: name.to_owned(), waited })?;
    }
}

/// Open an existing name read-write, take `LOCK_SH`, and check the name still refers to it.
pub(super) fn open_file(name: &str, timeout: Duration) -> Result<OwnedFd, SegmentError> {
    let (fd, st) = open_existing(name, libc::O_RDWR)?;
    lock_shared(fd.as_fd(), name, timeout)?;
    // `gc` may have removed the name between our open and our lock.
    match sysfd::lstat(&name::dev_shm_path(name)) {
        Ok(Some(now)) if now.st_ino == st.st_ino && now.st_dev == st.st_dev => Ok(fd),
        Ok(_) => Err(SegmentError::NotFound { name: name.to_owned() }),
        Err(e) => Err(SegmentError::io("stat", name, e)),
    }
}

/// [`open_file`], waiting up to `opts.wait_for` for the name to appear.
pub(super) fn open_waiting(opts: &SegmentOptions, name: &str) -> Result<OwnedFd, SegmentError> {
    let mut poll = Poll::new();
    loop {
        match open_file(name, opts.open_timeout) {
            Err(SegmentError::NotFound { .. }) if poll.wait(opts.wait_for).is_ok() => {}
            other => return other,
        }
    }
}

/// The file's size once it is non-zero: an empty file gets [`EMPTY_GRACE`] (at most
/// `timeout`) for its creator to size it, then is refused as [`SegmentError::EmptyFile`].
pub(super) fn wait_sized(fd: BorrowedFd<'_>, name: &str, timeout: Duration) -> Result<u64, SegmentError> {
    let mut poll = Poll::new();
    loop {
        let size = u64::try_from(fstat(fd, name)?.st_size).unwrap_or(0);
        if size > MAX_SEGMENT_LEN {
            return Err(SegmentError::TooLarge {
                requested: size,
                capacity: MAX_SEGMENT_LEN,
                where_: "the address space",
            });
        }
        if size > 0 {
            return Ok(size);
        }
        poll.wait(EMPTY_GRACE.min(timeout)).map_err(|_| SegmentError::EmptyFile { name: name.to_owned() })?;
    }
}

/// `shm_open(O_CREAT|O_EXCL)`, `LOCK_SH`, size and reserve. Unlinks on failure.
pub(super) fn create_file(opts: &SegmentOptions, name: &str, total: u64) -> Result<OwnedFd, SegmentError> {
    // A sparse segment this small cannot be absurd, and reserving ones learn of a full
    // /dev/shm from posix_fallocate anyway: skip the statvfs on the common small path.
    let check_capacity = opts.reserve || total > SPARSE_CHECK_ABOVE;
    if check_capacity
        && let Ok(cap) = sysfd::fs_capacity("/dev/shm")
        && cap > 0
        && total > cap
    {
        return Err(SegmentError::TooLarge { requested: total, capacity: cap, where_: "/dev/shm" });
    }
    let fd = sysfd::shm_open(name, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, opts.mode)
        .map_err(|e| open_error(name, "shm_open", e))?;
    let guard = UnlinkGuard(Some(name));
    size_file(opts, fd.as_fd(), name, total)?;
    std::mem::forget(guard);
    Ok(fd)
}

/// Take `LOCK_SH`, `ftruncate` to `total` and (unless sparse) reserve the memory.
pub(super) fn size_file(opts: &SegmentOptions, fd: BorrowedFd<'_>, name: &str, total: u64) -> Result<(), SegmentError> {
    lock_shared(fd, name, opts.open_timeout)?;
    sysfd::ftruncate(fd, total).map_err(|e| match e.raw_os_error() {
        Some(libc::EFBIG) | Some(libc::EINVAL) | Some(libc::ENOSPC) => {
            SegmentError::TooLarge { requested: total, capacity: 0, where_: "the filesystem's file size limit" }
        }
        _ => SegmentError::io("ftruncate", name, e),
    })?;
    if opts.reserve {
        sysfd::fallocate(fd, total).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::ENOMEM) => {
                SegmentError::NoSpace { name: name.to_owned(), len: total, source: e }
            }
            _ => SegmentError::io("posix_fallocate", name, e),
        })?;
    }
    Ok(())
}

/// Unlinks a half-created named segment when creation fails.
pub(super) struct UnlinkGuard<'a>(pub(super) Option<&'a str>);

impl Drop for UnlinkGuard<'_> {
    fn drop(&mut self) {
        if let Some(name) = self.0 {
            let _ = sysfd::shm_unlink(name);
        }
    }
}

/// The typed error for a failed `shm_open` of `name`.
pub(super) fn open_error(name: &str, op: &'static str, e: std::io::Error) -> SegmentError {
    match e.raw_os_error() {
        Some(libc::EEXIST) => SegmentError::AlreadyExists { name: name.to_owned() },
        Some(libc::ENOENT) => SegmentError::NotFound { name: name.to_owned() },
        Some(libc::EACCES) | Some(libc::EPERM) => SegmentError::PermissionDenied { name: name.to_owned(), source: e },
        Some(libc::ENAMETOOLONG) => {
            SegmentError::InvalidName { name: name.to_owned(), reason: "it is too long for this system".into() }
        }
        _ => SegmentError::io(op, name, e),
    }
}
