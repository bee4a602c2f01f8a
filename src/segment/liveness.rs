//! Liveness without pids: shared `flock`s as tokens, staleness, listing and `gc`.

use std::os::fd::{AsFd, BorrowedFd};

use super::header::{self, HEADER_SIZE, HeaderInfo, HeaderProblem, MAGIC};
use super::{SegmentError, file, name};
use crate::sys::fd as sysfd;

/// Seconds an unpublished, header-less default-named file must age before `gc` takes it
/// for a crashed creator's leftover.
const LEFTOVER_GRACE_SECS: i64 = 60;

/// What `list` knows about one file in `/dev/shm`.
#[derive(Clone, Debug)]
pub struct SegmentStatus {
    /// The name, with its leading `/`.
    pub name: String,
    /// File size in bytes.
    pub size: u64,
    /// The validated header; `None` for foreign files and unpublished segments.
    pub header: Option<HeaderInfo>,
    /// Why the header was rejected, if it was (`None` when valid).
    pub problem: Option<String>,
    /// Whether the file starts with the shmkit magic (or is an empty default-named leftover).
    pub is_shmkit: bool,
    /// Whether no process holds the liveness lock (`None` when it could not be checked).
    pub stale: Option<bool>,
}

/// Whether the named segment is stale: no process maps it (nobody holds its shared
/// `flock`). A segment being created counts as live: its creator locks before sizing it.
///
/// ```
/// let seg = shmkit::Segment::create(None, 64)?;
/// assert!(!shmkit::segment::is_stale(seg.name().unwrap())?);
/// # Ok::<(), shmkit::SegmentError>(())
/// ```
///
/// A FIFO, directory, socket or symlink at the name is refused at once
/// ([`SegmentError::SpecialFile`]), as by every open path.
pub fn is_stale(name: &str) -> Result<bool, SegmentError> {
    let name = name::normalize(name)?;
    let (fd, _) = file::open_existing(&name, libc::O_RDONLY)?;
    probe_stale(fd.as_fd(), &name)
}

/// `LOCK_EX|LOCK_NB`: succeeds exactly when nobody holds `LOCK_SH`. Released on return.
fn probe_stale(fd: BorrowedFd<'_>, name: &str) -> Result<bool, SegmentError> {
    match sysfd::flock(fd, sysfd::Flock::ExclusiveNonBlocking) {
        Ok(()) => {
            let _ = sysfd::flock(fd, sysfd::Flock::Unlock);
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(SegmentError::io("flock", name, e)),
    }
}

/// Every regular file in `/dev/shm`, with its shmkit header (if any) and liveness. Special
/// files (FIFOs, directories, sockets, symlinks) are skipped.
pub fn list() -> Result<Vec<SegmentStatus>, SegmentError> {
    let dir = std::fs::read_dir("/dev/shm").map_err(|e| SegmentError::io("read_dir", "/dev/shm", e))?;
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Ok(ft) = entry.file_type() else { continue };
        if !ft.is_file() {
            continue;
        }
        let Some(bare) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        // Gone, replaced by a special file, unreadable: not ours to list.
        if let Ok(s) = status(&bare) {
            out.push(s);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// What sits at one name: size, shmkit header (read without mapping, so a short file
/// cannot raise SIGBUS) and liveness. A special file is [`SegmentError::SpecialFile`].
///
/// ```
/// let seg = shmkit::Segment::create(None, 64)?;
/// let s = shmkit::segment::status(seg.name().unwrap())?;
/// assert!(s.is_shmkit && s.header.is_some() && s.stale == Some(false));
/// # Ok::<(), shmkit::SegmentError>(())
/// ```
pub fn status(name: &str) -> Result<SegmentStatus, SegmentError> {
    let name = name::normalize(name)?;
    let (fd, st) = file::open_existing(&name, libc::O_RDONLY)?;
    let stale = probe_stale(fd.as_fd(), &name).ok();
    Ok(describe(&name, fd.as_fd(), &st, stale))
}

/// The status of the open file `fd` (whose `fstat` is `st`).
fn describe(name: &str, fd: BorrowedFd<'_>, st: &libc::stat, stale: Option<bool>) -> SegmentStatus {
    let size = u64::try_from(st.st_size).unwrap_or(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let settled = now.saturating_sub(st.st_ctime) >= LEFTOVER_GRACE_SECS;
    let mut buf = [0u8; HEADER_SIZE];
    let got = sysfd::pread(fd, &mut buf, 0).unwrap_or(0).min(HEADER_SIZE);
    let has_magic = got >= MAGIC.len() && buf[..MAGIC.len()] == MAGIC;
    // A default-named segment whose creator died before writing the header. Only after a
    // grace period: a creator holds no lock for the instant between `shm_open` and `flock`.
    let empty_leftover = settled
        && name.starts_with(name::DEFAULT_PREFIX)
        && !name.starts_with("/shmkit-raw-")
        && buf[..got.min(MAGIC.len())].iter().all(|&b| b == 0);
    let (header, problem) = if has_magic {
        match header::validate(&buf[..got], size) {
            Ok(h) => (Some(h), None),
            Err(HeaderProblem::NotReady) => (None, Some("not yet published".to_owned())),
            Err(p) => (None, Some(format!("{p:?}"))),
        }
    } else if size == 0 {
        (None, Some("empty file".to_owned()))
    } else {
        (None, None)
    };
    SegmentStatus { name: name.to_owned(), size, header, problem, is_shmkit: has_magic || empty_leftover, stale }
}

/// Remove exactly the stale shmkit segments (those no process maps) and return their names.
///
/// Files without the shmkit header (Python's segments, raw segments, other programs'
/// files) are never touched. A persisted segment that nobody maps *is* stale and goes.
/// The exclusive lock is held across the unlink, and the name is re-checked to refer to
/// the same file, so a segment being created or opened at the same moment is left alone.
///
/// ```no_run
/// for name in shmkit::segment::gc()? {
///     println!("removed {name}");
/// }
/// # Ok::<(), shmkit::SegmentError>(())
/// ```
pub fn gc() -> Result<Vec<String>, SegmentError> {
    let mut removed = Vec::new();
    for status in list()? {
        if !status.is_shmkit || status.stale != Some(true) {
            continue;
        }
        match remove_if_stale(&status.name) {
            Ok(true) => removed.push(status.name),
            // Gone or replaced by a special file since `list`: nothing of ours to remove.
            Ok(false) | Err(SegmentError::NotFound { .. } | SegmentError::SpecialFile { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

/// Unlink `name` if it is a stale shmkit segment (what [`gc`] does to each one), holding
/// `LOCK_EX` across the checks and the unlink: `Ok(false)` when a process maps it, when it
/// is not a shmkit segment (no shmkit header, and not an empty leftover of a crashed
/// creator; see [`SegmentStatus::is_shmkit`]), or when the name changed meanwhile.
pub fn remove_if_stale(name: &str) -> Result<bool, SegmentError> {
    let name = name::normalize(name)?;
    let (fd, ours) = file::open_existing(&name, libc::O_RDONLY)?;
    match sysfd::flock(fd.as_fd(), sysfd::Flock::ExclusiveNonBlocking) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
        Err(e) => return Err(SegmentError::io("flock", &name, e)),
    }
    // Checked on the locked file: the name may have been given to another file since `list`.
    if !describe(&name, fd.as_fd(), &ours, Some(true)).is_shmkit {
        return Ok(false);
    }
    match sysfd::lstat(&name::dev_shm_path(&name)) {
        Ok(Some(now)) if now.st_ino == ours.st_ino && now.st_dev == ours.st_dev => {}
        _ => return Ok(false),
    }
    match sysfd::shm_unlink(&name) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(SegmentError::io("shm_unlink", &name, e)),
    }
}
