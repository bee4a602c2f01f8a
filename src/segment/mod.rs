//! Shared-memory segments: creation, validation, liveness and removal.
//!
//! A segment is a `/dev/shm` object (named, for unrelated processes) or a sealed
//! `memfd` (anonymous, for related processes), mapped `MAP_SHARED`. shmkit segments
//! start with a [128-byte header](header) that is written first and published last;
//! raw segments have no header and are byte-compatible with Python's
//! `multiprocessing.shared_memory.SharedMemory`.
//!
//! # Protocol
//!
//! - **Create**: `shm_open(O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC, 0600)`, take `LOCK_SH`,
//!   `ftruncate`, reserve the memory with `posix_fallocate` (so a full `/dev/shm` fails
//!   now instead of raising SIGBUS later; opt out for sparse segments), map, write the
//!   header, initialise, then store `READY` with Release.
//! - **Open**: `shm_open`, take `LOCK_SH`, check the name still names this file, wait (bounded)
//!   for `READY` with Acquire, validate every header field against the file size and the
//!   caller's expected kind and element type.
//! - **Liveness**: every handle holds `LOCK_SH` on its descriptor while mapped; a segment is
//!   stale exactly when `LOCK_EX|LOCK_NB` succeeds ([`is_stale`], [`gc`]). No pids are used.
//! - **Unlink**: the creating handle unlinks on drop unless [`Segment::persist`]ed; a forked
//!   child never unlinks what its parent created.
//!
//! Named segments cannot be sealed: a peer with write access could `ftruncate` one and make
//! accesses fault with SIGBUS. Anonymous segments are sealed against shrinking and growing.

mod error;
pub mod header;
mod liveness;
mod mapping;
pub mod name;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use error::SegmentError;
pub use header::{HeaderInfo, Kind, TypeInfo};
pub use liveness::{SegmentStatus, gc, is_stale, list};
pub(crate) use mapping::Mapping;

use crate::sys::fd as sysfd;
use header::{HEADER_SIZE, HeaderProblem, MAGIC, READY, RawHeader};

/// How segments are created and opened. `SegmentOptions::default()` is what the
/// plain constructors use.
///
/// ```
/// use shmkit::SegmentOptions;
/// // A sparse 1 GiB scratch segment: pages are only backed when first touched.
/// let seg = SegmentOptions::new().reserve(false).create(None, 1 << 30)?;
/// assert_eq!(seg.len(), 1 << 30);
/// # Ok::<(), shmkit::SegmentError>(())
/// ```
#[derive(Clone, Debug)]
pub struct SegmentOptions {
    mode: u32,
    reserve: bool,
    open_timeout: Duration,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        Self { mode: 0o600, reserve: true, open_timeout: Duration::from_secs(5) }
    }
}

impl SegmentOptions {
    /// Mode 0600, memory reserved, 5 s open timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Permission bits for named segments (default `0o600`).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o777;
        self
    }

    /// Reserve the memory at creation (default `true`). Without it a segment is sparse
    /// and touching a page when `/dev/shm` is full raises SIGBUS.
    pub fn reserve(mut self, reserve: bool) -> Self {
        self.reserve = reserve;
        self
    }

    /// How long `open` waits for a creator that is still initialising (default 5 s).
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.open_timeout = timeout;
        self
    }

    /// Create a plain byte segment of `len` bytes; `None` picks a random `/shmkit-…` name.
    pub fn create(&self, name: Option<&str>, len: usize) -> Result<Segment, SegmentError> {
        Segment::create_typed(self, Target::Named(name), &Layout::bytes(len), |_| Ok(()))
    }

    /// Open a plain byte segment created by [`create`](Self::create).
    pub fn open(&self, name: &str) -> Result<Segment, SegmentError> {
        Segment::open_typed(self, name, &Expect::bytes())
    }

    /// Open any shmkit segment whatever its kind and element type (for tools that inspect
    /// segments); the header is validated as always.
    pub fn open_any(&self, name: &str) -> Result<Segment, SegmentError> {
        Segment::open_typed(self, name, &Expect { kind: None, elem: None, min_control_len: 0 })
    }

    /// Create an anonymous byte segment (sealed memfd), shared with forked children.
    pub fn anonymous(&self, len: usize) -> Result<Segment, SegmentError> {
        Segment::create_typed(self, Target::Anonymous, &Layout::bytes(len), |_| Ok(()))
    }

    /// Create a raw segment: no header, the payload is the whole file, exactly as
    /// Python's `SharedMemory(name, create=True, size=len)` makes it.
    pub fn create_raw(&self, name: Option<&str>, len: usize) -> Result<Segment, SegmentError> {
        if len == 0 {
            return Err(SegmentError::ZeroLength);
        }
        let name = match name {
            Some(n) => name::normalize(n)?,
            None => name::generate()?.replacen(name::DEFAULT_PREFIX, "/shmkit-raw-", 1),
        };
        let total = len as u64;
        let fd = Segment::create_file(self, &name, total)?;
        let map = match Mapping::new(fd, len) {
            Ok(map) => map,
            Err(e) => {
                let _ = sysfd::shm_unlink(&name);
                return Err(SegmentError::io("mmap", &name, e));
            }
        };
        Ok(Segment::assemble(map, Some(name), None, 0, len, Some(sysfd::getpid())))
    }

    /// Open a raw segment (any file in `/dev/shm`, for example one made by Python's
    /// `SharedMemory`): the payload is the whole file, no header is checked.
    pub fn open_raw(&self, name: &str) -> Result<Segment, SegmentError> {
        let name = name::normalize(name)?;
        let fd = Segment::open_file(&name)?;
        let st = sysfd::fstat(fd.as_fd()).map_err(|e| SegmentError::io("fstat", &name, e))?;
        let len = usize::try_from(st.st_size).unwrap_or(0);
        if len == 0 {
            return Err(SegmentError::ZeroLength);
        }
        let map = Mapping::new(fd, len).map_err(|e| SegmentError::io("mmap", &name, e))?;
        Ok(Segment::assemble(map, Some(name), None, 0, len, None))
    }
}

/// Sparse (not reserving) segments up to this size skip the `/dev/shm` capacity check.
const SPARSE_CHECK_ABOVE: u64 = 64 << 20;

/// A mapped shared-memory segment.
///
/// Plain byte segments expose their payload only through raw pointers
/// ([`as_ptr`](Self::as_ptr)): another process may write it at any time. The typed
/// wrappers ([`SharedArray`](crate::SharedArray), [`SharedValue`](crate::SharedValue), …)
/// give safe access.
///
/// ```
/// use shmkit::Segment;
/// let seg = Segment::create(None, 4096)?;           // random /shmkit-… name
/// let peer = Segment::open(seg.name().unwrap())?;  // as another process would
/// assert_eq!(peer.len(), 4096);
/// drop(peer);
/// drop(seg);                                         // the creator unlinks the name
/// # Ok::<(), shmkit::SegmentError>(())
/// ```
pub struct Segment {
    map: Mapping,
    name: Option<String>,
    header: Option<HeaderInfo>,
    payload_offset: usize,
    payload_len: usize,
    /// `Some(pid)` when this handle created the segment and will unlink it on drop,
    /// but only in the process `pid` (never in a forked child).
    unlink_in: Option<u32>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name)
            .field("header", &self.header)
            .field("payload_len", &self.payload_len)
            .field("unlinks_on_drop", &self.unlink_in.is_some())
            .finish()
    }
}

/// Where a new segment lives.
pub(crate) enum Target<'a> {
    /// In `/dev/shm`; `None` picks a random name.
    Named(Option<&'a str>),
    /// A sealed memfd.
    Anonymous,
}

/// The shape of a new typed segment.
pub(crate) struct Layout {
    pub kind: Kind,
    pub elem: TypeInfo,
    pub elem_count: u64,
    /// Bytes of control block between the header and the payload.
    pub control_len: usize,
    /// Alignment of the payload (at least the element's).
    pub payload_align: usize,
}

impl Layout {
    fn bytes(len: usize) -> Self {
        Layout {
            kind: Kind::Bytes,
            elem: TypeInfo { size: 1, align: 1, name: "u8".into() },
            elem_count: len as u64,
            control_len: 0,
            payload_align: 64,
        }
    }

    /// `(payload_offset, payload_len, total)`, or an error when it cannot exist.
    fn sizes(&self) -> Result<(u64, u64, u64), SegmentError> {
        if self.elem_count == 0 {
            return Err(SegmentError::ZeroLength);
        }
        let align = (self.payload_align.max(self.elem.align as usize)).max(1) as u64;
        let too_large =
            || SegmentError::TooLarge { requested: u64::MAX, capacity: isize::MAX as u64, where_: "the address space" };
        let offset = (HEADER_SIZE as u64 + self.control_len as u64).div_ceil(align) * align;
        let payload = self.elem.size.checked_mul(self.elem_count).ok_or_else(too_large)?;
        let total = offset.checked_add(payload).ok_or_else(too_large)?;
        if total > isize::MAX as u64 {
            return Err(SegmentError::TooLarge {
                requested: total,
                capacity: isize::MAX as u64,
                where_: "the address space",
            });
        }
        Ok((offset, payload, total))
    }
}

/// What `open` expects to find.
pub(crate) struct Expect {
    pub kind: Option<Kind>,
    pub elem: Option<TypeInfo>,
    pub min_control_len: usize,
}

impl Expect {
    fn bytes() -> Self {
        Expect { kind: Some(Kind::Bytes), elem: None, min_control_len: 0 }
    }
}

/// Unlinks a half-created named segment when creation fails.
struct UnlinkGuard<'a>(Option<&'a str>);

impl Drop for UnlinkGuard<'_> {
    fn drop(&mut self) {
        if let Some(name) = self.0 {
            let _ = sysfd::shm_unlink(name);
        }
    }
}

impl Segment {
    /// Create a named byte segment of `len` bytes (`None`: a random `/shmkit-…` name),
    /// reserving its memory. See [`SegmentOptions`] for mode, sparse segments and timeouts.
    pub fn create(name: Option<&str>, len: usize) -> Result<Segment, SegmentError> {
        SegmentOptions::default().create(name, len)
    }

    /// Open a named byte segment another process created.
    pub fn open(name: &str) -> Result<Segment, SegmentError> {
        SegmentOptions::default().open(name)
    }

    /// An anonymous byte segment (sealed memfd) for this process and its forked children.
    pub fn anonymous(len: usize) -> Result<Segment, SegmentError> {
        SegmentOptions::default().anonymous(len)
    }

    /// A raw (headerless, Python-compatible) segment; see [`SegmentOptions::create_raw`].
    ///
    /// ```
    /// let seg = shmkit::Segment::create_raw(None, 100)?;
    /// assert!(seg.header().is_none());
    /// # Ok::<(), shmkit::SegmentError>(())
    /// ```
    pub fn create_raw(name: Option<&str>, len: usize) -> Result<Segment, SegmentError> {
        SegmentOptions::default().create_raw(name, len)
    }

    /// Open a raw segment; see [`SegmentOptions::open_raw`].
    pub fn open_raw(name: &str) -> Result<Segment, SegmentError> {
        SegmentOptions::default().open_raw(name)
    }

    /// Remove a named segment from `/dev/shm` (processes that map it keep their mapping).
    ///
    /// ```
    /// let mut seg = shmkit::Segment::create(None, 64)?;
    /// seg.persist();
    /// shmkit::Segment::unlink(seg.name().unwrap())?;
    /// # Ok::<(), shmkit::SegmentError>(())
    /// ```
    pub fn unlink(name: &str) -> Result<(), SegmentError> {
        let name = name::normalize(name)?;
        sysfd::shm_unlink(&name).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SegmentError::NotFound { name: name.clone() },
            std::io::ErrorKind::PermissionDenied => SegmentError::PermissionDenied { name: name.clone(), source: e },
            _ => SegmentError::io("shm_unlink", &name, e),
        })
    }

    /// Open a shmkit segment from a descriptor inherited from a parent (for example an
    /// anonymous segment passed to a re-executed child; see [`Segment::fd`]). Any kind.
    pub fn from_fd(fd: OwnedFd) -> Result<Segment, SegmentError> {
        let expect = Expect { kind: None, elem: None, min_control_len: 0 };
        Self::open_mapped(&SegmentOptions::default(), fd, None, &expect)
    }

    /// The name (`/…`), `None` for anonymous segments.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The validated header, `None` for raw segments.
    pub fn header(&self) -> Option<&HeaderInfo> {
        self.header.as_ref()
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.payload_len
    }

    /// Whether the payload is empty (never true: segments hold at least one byte).
    pub fn is_empty(&self) -> bool {
        self.payload_len == 0
    }

    /// Start of the payload. Another process may read or write it concurrently: any
    /// access through this pointer must be synchronised by the caller.
    pub fn as_ptr(&self) -> *mut u8 {
        // Offsets were validated against the mapping length.
        self.map.base().wrapping_add(self.payload_offset)
    }

    /// The payload as a byte slice.
    ///
    /// # Safety
    ///
    /// No process may write the payload while the returned slice is alive.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the payload lies inside the live mapping; the caller guarantees no
        // concurrent writer for the slice's lifetime.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.payload_len) }
    }

    /// The payload as a mutable byte slice.
    ///
    /// # Safety
    ///
    /// No other reference to the payload may exist, in this or any other process, while
    /// the returned slice is alive.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: the payload lies inside the live mapping; the caller guarantees exclusivity.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.payload_len) }
    }

    /// Keep the name after this handle drops (by default the creator unlinks it).
    pub fn persist(&mut self) {
        self.unlink_in = None;
    }

    /// Whether dropping this handle unlinks the name.
    pub fn unlinks_on_drop(&self) -> bool {
        self.unlink_in.is_some()
    }

    /// The descriptor behind the mapping (holds the liveness lock). Duplicate it and
    /// clear `FD_CLOEXEC` to hand an anonymous segment to an `exec`ed child.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.map.fd()
    }

    /// Whether the memfd is sealed against shrinking and growing (anonymous segments).
    pub fn is_sealed(&self) -> bool {
        let want = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
        sysfd::seals(self.fd()).is_ok_and(|s| s & want == want)
    }

    /// Start of the control block between header and payload.
    pub(crate) fn control_ptr(&self) -> *mut u8 {
        self.map.base().wrapping_add(HEADER_SIZE)
    }

    fn assemble(
        map: Mapping,
        name: Option<String>,
        header: Option<HeaderInfo>,
        payload_offset: usize,
        payload_len: usize,
        unlink_in: Option<u32>,
    ) -> Segment {
        Segment { map, name, header, payload_offset, payload_len, unlink_in }
    }

    /// `shm_open(O_CREAT|O_EXCL)`, `LOCK_SH`, size and reserve. Unlinks on failure.
    fn create_file(opts: &SegmentOptions, name: &str, total: u64) -> Result<OwnedFd, SegmentError> {
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
        Self::size_file(opts, fd.as_fd(), name, total)?;
        std::mem::forget(guard);
        Ok(fd)
    }

    fn size_file(opts: &SegmentOptions, fd: BorrowedFd<'_>, name: &str, total: u64) -> Result<(), SegmentError> {
        sysfd::flock(fd, sysfd::Flock::Shared).map_err(|e| SegmentError::io("flock", name, e))?;
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

    /// `shm_open` an existing name, take `LOCK_SH`, and check the name still refers to it.
    fn open_file(name: &str) -> Result<OwnedFd, SegmentError> {
        let fd = sysfd::shm_open(name, libc::O_RDWR, 0).map_err(|e| open_error(name, "shm_open", e))?;
        sysfd::flock(fd.as_fd(), sysfd::Flock::Shared).map_err(|e| SegmentError::io("flock", name, e))?;
        let st = sysfd::fstat(fd.as_fd()).map_err(|e| SegmentError::io("fstat", name, e))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(SegmentError::NotShmkit { name: name.to_owned() });
        }
        // `gc` may have removed the name between our open and our lock.
        match sysfd::lstat(&name::dev_shm_path(name)) {
            Ok(Some(now)) if now.st_ino == st.st_ino && now.st_dev == st.st_dev => Ok(fd),
            Ok(_) => Err(SegmentError::NotFound { name: name.to_owned() }),
            Err(e) => Err(SegmentError::io("stat", name, e)),
        }
    }

    /// Create a typed segment: size it, write the header, run `init` on the unpublished
    /// segment, then publish it with a Release store.
    pub(crate) fn create_typed(
        opts: &SegmentOptions,
        target: Target<'_>,
        layout: &Layout,
        init: impl FnOnce(&Segment) -> Result<(), SegmentError>,
    ) -> Result<Segment, SegmentError> {
        let (offset, payload_len, total) = layout.sizes()?;
        let (fd, name) = match target {
            Target::Named(n) => {
                let name = match n {
                    Some(n) => name::normalize(n)?,
                    None => name::generate()?,
                };
                (Self::create_file(opts, &name, total)?, Some(name))
            }
            Target::Anonymous => {
                let fd = sysfd::memfd_create("shmkit").map_err(|e| SegmentError::io("memfd_create", "", e))?;
                Self::size_file(opts, fd.as_fd(), "", total)?;
                sysfd::seal_size(fd.as_fd()).map_err(|e| SegmentError::io("seal", "", e))?;
                (fd, None)
            }
        };
        let mut guard = UnlinkGuard(name.as_deref());
        let label = name.as_deref().unwrap_or("");
        let map = Mapping::new(fd, total as usize).map_err(|e| SegmentError::io("mmap", label, e))?;
        // One getpid (a real syscall) for both the header and the unlink-on-drop owner.
        let pid = sysfd::getpid();
        let info = HeaderInfo {
            version: header::FORMAT_VERSION,
            kind: layout.kind,
            elem: layout.elem.clone(),
            payload_offset: offset,
            payload_len,
            elem_count: layout.elem_count,
            creator_pid: pid,
            created_unix_ns: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
        };
        let raw = header::build(&info);
        let base = map.base();
        // SAFETY: the mapping is at least HEADER_SIZE bytes, page aligned, and nobody else
        // reads the header before `state` is READY (openers wait for it). The magic goes in
        // with an atomic store because openers peek at it while waiting.
        unsafe {
            std::ptr::write(base.cast::<RawHeader>(), raw);
            AtomicU64::from_ptr(base.cast::<u64>()).store(u64::from_ne_bytes(MAGIC), Ordering::Relaxed);
        }
        let unlink_in = name.is_some().then_some(pid);
        let seg = Segment::assemble(map, name.clone(), Some(info), offset as usize, payload_len as usize, unlink_in);
        init(&seg)?;
        // SAFETY: offset 12 is the 4-aligned `state` word inside the mapped header.
        let state = unsafe { AtomicU32::from_ptr(base.add(12).cast::<u32>()) };
        state.store(READY, Ordering::Release);
        guard.0 = None;
        Ok(seg)
    }

    /// Open a typed segment by name and validate it against `expect`.
    pub(crate) fn open_typed(opts: &SegmentOptions, name: &str, expect: &Expect) -> Result<Segment, SegmentError> {
        let name = name::normalize(name)?;
        let fd = Self::open_file(&name)?;
        Self::open_mapped(opts, fd, Some(name), expect)
    }

    fn open_mapped(
        opts: &SegmentOptions,
        fd: OwnedFd,
        name: Option<String>,
        expect: &Expect,
    ) -> Result<Segment, SegmentError> {
        let label = name.clone().unwrap_or_default();
        let start = Instant::now();
        let mut pause = Duration::from_micros(50);
        let mut fd = Some(fd);
        let (map, info) = loop {
            let f = fd.take().ok_or_else(|| SegmentError::io("open", &label, std::io::ErrorKind::Other.into()))?;
            let size = sysfd::fstat(f.as_fd()).map_err(|e| SegmentError::io("fstat", &label, e))?.st_size.max(0) as u64;
            if size >= HEADER_SIZE as u64 {
                let map = Mapping::new(f, size as usize).map_err(|e| SegmentError::io("mmap", &label, e))?;
                match Self::read_header(&map, size) {
                    Ok(info) => break (map, info),
                    Err(HeaderProblem::NotReady) => fd = Some(map_into_fd(map)?),
                    Err(p) => return Err(problem_error(&label, size, p)),
                }
            } else if size > 0 {
                // Creators size the file in one ftruncate: a short non-empty file is not a
                // segment being created.
                let mut head = [0u8; 8];
                let n = sysfd::pread(f.as_fd(), &mut head, 0).unwrap_or(0);
                return Err(if n == MAGIC.len() && head == MAGIC {
                    SegmentError::Truncated { name: label, size, expected: HEADER_SIZE as u64 }
                } else {
                    SegmentError::NotShmkit { name: label }
                });
            } else {
                fd = Some(f);
            }
            let waited = start.elapsed();
            if waited >= opts.open_timeout {
                return Err(SegmentError::InitTimeout { name: label, waited });
            }
            std::thread::sleep(pause.min(opts.open_timeout - waited));
            pause = (pause * 2).min(Duration::from_millis(5));
        };
        if let Some(kind) = expect.kind
            && info.kind != kind
        {
            return Err(SegmentError::KindMismatch { name: label, expected: kind, found: info.kind.name().to_owned() });
        }
        if let Some(elem) = &expect.elem
            && info.elem != *elem
        {
            return Err(SegmentError::TypeMismatch { name: label, expected: elem.clone(), found: info.elem.clone() });
        }
        if info.payload_offset < (HEADER_SIZE + expect.min_control_len) as u64 {
            return Err(SegmentError::Corrupt {
                name: label,
                reason: format!("payload offset {} leaves no room for the control block", info.payload_offset),
            });
        }
        let (offset, len) = (info.payload_offset as usize, info.payload_len as usize);
        Ok(Segment::assemble(map, name, Some(info), offset, len, None))
    }

    /// Read `state` with Acquire, then snapshot and validate the header.
    fn read_header(map: &Mapping, size: u64) -> Result<HeaderInfo, HeaderProblem> {
        let base = map.base();
        // SAFETY: the mapping holds at least HEADER_SIZE bytes and is page aligned, so the
        // magic (offset 0) and state (offset 12) words are in bounds and aligned.
        let (magic, state) = unsafe {
            (
                AtomicU64::from_ptr(base.cast::<u64>()).load(Ordering::Relaxed),
                AtomicU32::from_ptr(base.add(12).cast::<u32>()).load(Ordering::Acquire),
            )
        };
        if state == 0 {
            return if magic == 0 || magic == u64::from_ne_bytes(MAGIC) {
                Err(HeaderProblem::NotReady)
            } else {
                Err(HeaderProblem::NotShmkit)
            };
        }
        // SAFETY: in bounds as above; RawHeader is Pod so any bytes are a valid value. A
        // volatile copy: the bytes are validated after the copy, never trusted in place.
        let raw: RawHeader = unsafe { std::ptr::read_volatile(base.cast::<RawHeader>()) };
        header::validate(bytemuck::bytes_of(&raw), size)
    }
}

/// Recover the descriptor from a mapping we are about to retry with.
fn map_into_fd(map: Mapping) -> Result<OwnedFd, SegmentError> {
    let fd = map.fd().try_clone_to_owned().map_err(|e| SegmentError::io("dup", "", e))?;
    drop(map);
    Ok(fd)
}

fn open_error(name: &str, op: &'static str, e: std::io::Error) -> SegmentError {
    match e.raw_os_error() {
        Some(libc::EEXIST) => SegmentError::AlreadyExists { name: name.to_owned() },
        Some(libc::ENOENT) => SegmentError::NotFound { name: name.to_owned() },
        Some(libc::EACCES) | Some(libc::EPERM) => SegmentError::PermissionDenied { name: name.to_owned(), source: e },
        Some(libc::ELOOP) => SegmentError::NotShmkit { name: name.to_owned() },
        Some(libc::ENAMETOOLONG) => {
            SegmentError::InvalidName { name: name.to_owned(), reason: "it is too long for this system".into() }
        }
        _ => SegmentError::io(op, name, e),
    }
}

fn problem_error(name: &str, size: u64, p: HeaderProblem) -> SegmentError {
    let name = name.to_owned();
    match p {
        HeaderProblem::NotShmkit => SegmentError::NotShmkit { name },
        HeaderProblem::NotReady => SegmentError::InitTimeout { name, waited: Duration::ZERO },
        HeaderProblem::Version(found) => {
            SegmentError::UnsupportedVersion { name, found, supported: header::FORMAT_VERSION }
        }
        HeaderProblem::UnknownKind(code) => SegmentError::UnknownKind { name, code },
        HeaderProblem::Truncated { expected } => SegmentError::Truncated { name, size, expected },
        HeaderProblem::Corrupt(reason) => SegmentError::Corrupt { name, reason },
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if let (Some(pid), Some(name)) = (self.unlink_in, &self.name)
            && pid == sysfd::getpid()
        {
            // Already gone (someone ran `shmkit rm`, or Python's resource tracker) is fine.
            let _ = sysfd::shm_unlink(name);
        }
    }
}
