//! Liveness without pids: shared `flock`s as tokens, staleness, listing and `gc`.

use std::os::fd::{AsFd, BorrowedFd};

use super::header::{self, HEADER_SIZE, HeaderInfo, HeaderProblem, MAGIC};
use super::{SegmentError, name};
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
pub fn is_stale(name: &str) -> Result<bool, SegmentError> {
    let name = name::normalize(name)?;
    let fd = sysfd::shm_open(&name, libc::O_RDONLY, 0).map_err(|e| super::open_error(&name, "shm_open", e))?;
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

/// Every file in `/dev/shm`, with its shmkit header (if any) and liveness.
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
        let Ok(name) = name::normalize(&bare) else { continue };
        if let Some(status) = inspect(&name) {
            out.push(status);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Read a file's header without mapping it (no SIGBUS on short files). `None` when it vanished.
fn inspect(name: &str) -> Option<SegmentStatus> {
    let fd = sysfd::shm_open(name, libc::O_RDONLY, 0).ok()?;
    let st = sysfd::fstat(fd.as_fd()).ok()?;
    let size = st.st_size.max(0) as u64;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let settled = now.saturating_sub(st.st_ctime) >= LEFTOVER_GRACE_SECS;
    let mut buf = [0u8; HEADER_SIZE];
    let got = sysfd::pread(fd.as_fd(), &mut buf, 0).unwrap_or(0);
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
    } else {
        (None, None)
    };
    let stale = probe_stale(fd.as_fd(), name).ok();
    Some(SegmentStatus { name: name.to_owned(), size, header, problem, is_shmkit: has_magic || empty_leftover, stale })
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
        if remove_if_stale(&status.name)? {
            removed.push(status.name);
        }
    }
    Ok(removed)
}

/// Unlink `name` if it is stale, holding `LOCK_EX` across the check and the unlink.
pub(crate) fn remove_if_stale(name: &str) -> Result<bool, SegmentError> {
    let Ok(fd) = sysfd::shm_open(name, libc::O_RDONLY, 0) else {
        return Ok(false);
    };
    match sysfd::flock(fd.as_fd(), sysfd::Flock::ExclusiveNonBlocking) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
        Err(e) => return Err(SegmentError::io("flock", name, e)),
    }
    let ours = sysfd::fstat(fd.as_fd()).map_err(|e| SegmentError::io("fstat", name, e))?;
    match sysfd::lstat(&name::dev_shm_path(name)) {
        Ok(Some(now)) if now.st_ino == ours.st_ino && now.st_dev == ours.st_dev => {}
        _ => return Ok(false),
    }
    match sysfd::shm_unlink(name) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(SegmentError::io("shm_unlink", name, e)),
    }
}
