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
//! - **Open or create**: `O_CREAT|O_EXCL` first; on `EEXIST` an ordinary open (with its bounded
//!   wait for publication), then the header must show the kind, element type and element
//!   count the caller would have created, else a typed mismatch. Of N racing processes
//!   exactly one creates. A creator that dies before publishing leaves the others an
//!   `InitTimeout`, not a takeover: see [`SegmentOptions::open_or_create`].
//! - **Waiting for a name**: with [`SegmentOptions::wait_for`], `open` polls (50 µs doubling to
//!   5 ms) for a name that does not exist yet, then waits for publication as above.
//! - **Liveness**: every handle holds `LOCK_SH` on its descriptor while mapped; a segment is
//!   stale exactly when `LOCK_EX|LOCK_NB` succeeds ([`is_stale`], [`gc`]). No pids are used.
//! - **Unlink**: the creating handle unlinks on drop unless [`Segment::persist`]ed; a forked
//!   child never unlinks what its parent created.
//!
//! Named segments cannot be sealed: a peer with write access could `ftruncate` one and make
//! accesses fault with SIGBUS. Anonymous segments are sealed against shrinking and growing.

mod error;
mod file;
pub mod header;
pub(crate) mod kind;
mod layout;
mod liveness;
mod mapping;
pub mod name;
mod options;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use error::SegmentError;
pub use file::FileKind;
pub use header::{HeaderInfo, Kind, TypeInfo};
pub(crate) use layout::{Expect, Layout};
pub use liveness::{SegmentStatus, gc, is_stale, list, remove_if_stale, status};
pub(crate) use mapping::Mapping;
pub use options::SegmentOptions;

use crate::sys::fd as sysfd;
use header::{HEADER_SIZE, HeaderProblem, MAGIC};

/// The largest segment shmkit creates or maps, header included: `isize::MAX` bytes, the
/// most one Rust allocation (and so one mapping handed out as a slice) may span. Larger
/// requests, and headers claiming more, are [`SegmentError::TooLarge`] or corrupt.
pub const MAX_SEGMENT_LEN: u64 = isize::MAX as u64;

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
#[must_use = "dropping the creating handle unlinks the name (unless `persist`ed) and unmaps the segment"]
pub struct Segment {
    map: Mapping,
    name: Option<String>,
    header: Option<HeaderInfo>,
    payload_offset: usize,
    payload_len: usize,
    /// `Some(pid)` when this handle created the segment and will unlink it on drop,
    /// but only in the process `pid` (never in a forked child).
    unlink_in: Option<u32>,
    /// Whether this handle created the segment (rather than opened it).
    created: bool,
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

    /// Open the named byte segment, or create it with `len` bytes if the name is free:
    /// of many processes racing, exactly one creates; see [`SegmentOptions::open_or_create`].
    ///
    /// ```
    /// let name = format!("/shmkit-doc-ooc-{}", std::process::id());
    /// let a = shmkit::Segment::open_or_create(&name, 64)?;
    /// let b = shmkit::Segment::open_or_create(&name, 64)?;
    /// assert!(a.created() && !b.created());
    /// # Ok::<(), shmkit::SegmentError>(())
    /// ```
    pub fn open_or_create(name: &str, len: usize) -> Result<Segment, SegmentError> {
        SegmentOptions::default().open_or_create(name, len)
    }

    /// As [`create`](Self::create), with explicit options (same as [`SegmentOptions::create`]).
    pub fn create_with(opts: &SegmentOptions, name: Option<&str>, len: usize) -> Result<Segment, SegmentError> {
        opts.create(name, len)
    }

    /// As [`open`](Self::open), with explicit options (same as [`SegmentOptions::open`]).
    pub fn open_with(opts: &SegmentOptions, name: &str) -> Result<Segment, SegmentError> {
        opts.open(name)
    }

    /// As [`open_or_create`](Self::open_or_create), with explicit options.
    pub fn open_or_create_with(opts: &SegmentOptions, name: &str, len: usize) -> Result<Segment, SegmentError> {
        opts.open_or_create(name, len)
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

    /// Whether this handle created the segment, rather than opened one that existed (what
    /// an `open_or_create` caller asks to learn whether it won the race).
    pub fn created(&self) -> bool {
        self.created
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

    /// Hand out a mapped segment; `created` is `Some(pid)` when this process made it (a
    /// named one is then unlinked on drop in `pid`).
    fn assemble(
        map: Mapping,
        name: Option<String>,
        header: Option<HeaderInfo>,
        payload_offset: usize,
        payload_len: usize,
        created: Option<u32>,
    ) -> Segment {
        // From here the mapping's addresses are handed out: a lock may be taken inside it.
        let unlink_in = if name.is_some() { created } else { None };
        Segment { map: map.expose(), name, header, payload_offset, payload_len, unlink_in, created: created.is_some() }
    }

    /// Create a typed segment: size it, write the header, run `init` on the unpublished
    /// segment, then publish it with a Release store.
    pub(crate) fn create_typed(
        opts: &SegmentOptions,
        target: Target<'_>,
        layout: &Layout,
        init: impl FnOnce(&Segment) -> Result<(), SegmentError>,
    ) -> Result<Segment, SegmentError> {
        let (_, _, total) = layout.sizes()?;
        let (fd, name) = match target {
            Target::Named(n) => {
                let name = match n {
                    Some(n) => name::normalize(n)?,
                    None => name::generate()?,
                };
                (file::create_file(opts, &name, total)?, Some(name))
            }
            Target::Anonymous => {
                let fd = sysfd::memfd_create("shmkit").map_err(|e| SegmentError::io("memfd_create", "", e))?;
                file::size_file(opts, fd.as_fd(), "", total)?;
                sysfd::seal_size(fd.as_fd()).map_err(|e| SegmentError::io("seal", "", e))?;
                (fd, None)
            }
        };
        Self::init_created(fd, name, layout, init)
    }

    /// Map the file this process just created and sized for `layout` (`fd`, named `name`),
    /// write the header, run `init`, publish. A named file is unlinked on failure.
    fn init_created(
        fd: OwnedFd,
        name: Option<String>,
        layout: &Layout,
        init: impl FnOnce(&Segment) -> Result<(), SegmentError>,
    ) -> Result<Segment, SegmentError> {
        let (offset, payload_len, total) = layout.sizes()?;
        let mut guard = file::UnlinkGuard(name.as_deref());
        let label = name.as_deref().unwrap_or("");
        // `sizes` bounds `total` by MAX_SEGMENT_LEN, so it fits a usize.
        let map = Mapping::new(fd, total as usize).map_err(|e| SegmentError::io("mmap", label, e))?;
        // One getpid (a real syscall) for both the header and the unlink-on-drop owner.
        let pid = crate::sys::owner::pid();
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
        let base = map.base();
        // SAFETY: the mapping is at least HEADER_SIZE bytes and page aligned; openers (in
        // this process too) only touch the header with atomics or syscalls.
        unsafe { header::store(base, &header::build(&info)) };
        let seg = Segment::assemble(map, name.clone(), Some(info), offset as usize, payload_len as usize, Some(pid));
        kind::test_hook_before_publish(&seg);
        init(&seg)?;
        // SAFETY: as above; the Release store publishes the header and everything `init` wrote.
        unsafe { header::publish(base) };
        guard.0 = None;
        Ok(seg)
    }

    /// Open a typed segment by name and validate it against `expect`.
    pub(crate) fn open_typed(opts: &SegmentOptions, name: &str, expect: &Expect) -> Result<Segment, SegmentError> {
        let name = name::normalize(name)?;
        let fd = file::open_waiting(opts, &name)?;
        Self::open_mapped(opts, fd, Some(name), expect)
    }

    /// Wait (bounded) for the segment behind `fd` to be published, validate its header
    /// against the file and `expect`, and hand it out.
    ///
    /// Every mapping made here before the segment is handed out is unmapped when it is
    /// dropped (a retry, a refusal), even while this process holds a lock: no code has seen
    /// its addresses, so no held lock can lie inside it.
    fn open_mapped(
        opts: &SegmentOptions,
        fd: OwnedFd,
        name: Option<String>,
        expect: &Expect,
    ) -> Result<Segment, SegmentError> {
        let label = name.clone().unwrap_or_default();
        file::refuse_special(&label, &file::fstat(fd.as_fd(), &label)?)?;
        let mut poll = file::Poll::new();
        let mut fd = fd;
        let (map, info) = loop {
            let size = file::wait_sized(fd.as_fd(), &label, opts.open_timeout)?;
            if size < HEADER_SIZE as u64 {
                // Creators size the file in one ftruncate: a short non-empty file is not a
                // segment being created.
                let mut head = [0u8; 8];
                let n = sysfd::pread(fd.as_fd(), &mut head, 0).unwrap_or(0);
                return Err(if n == MAGIC.len() && head == MAGIC {
                    SegmentError::Truncated { name: label, size, expected: HEADER_SIZE as u64 }
                } else {
                    SegmentError::NotShmkit { name: label }
                });
            }
            // `wait_sized` bounds `size` by MAX_SEGMENT_LEN, so it fits a usize.
            let map = Mapping::new(fd, size as usize).map_err(|e| SegmentError::io("mmap", &label, e))?;
            match Self::read_header(&map, size) {
                Ok(info) => break (map, info),
                Err(HeaderProblem::NotReady) => fd = map.into_fd(),
                Err(p) => return Err(problem_error(&label, size, p)),
            }
            poll.wait(opts.open_timeout).map_err(|waited| SegmentError::InitTimeout { name: label.clone(), waited })?;
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
        if !expect.control_fits(info.payload_offset) {
            return Err(SegmentError::Corrupt {
                name: label,
                reason: format!("payload offset {} leaves no room for the control block", info.payload_offset),
            });
        }
        // `validate` bounds the payload's end by the file size and MAX_SEGMENT_LEN.
        let (offset, len) = (info.payload_offset as usize, info.payload_len as usize);
        Ok(Segment::assemble(map, name, Some(info), offset, len, None))
    }

    /// Read `state` with Acquire, then snapshot and validate the header.
    fn read_header(map: &Mapping, size: u64) -> Result<HeaderInfo, HeaderProblem> {
        // SAFETY: the mapping holds at least HEADER_SIZE bytes and is page aligned; the
        // header is only ever accessed with atomics or syscalls.
        let (magic, state) = unsafe { header::peek(map.base()) };
        if state == 0 {
            return if magic == 0 || magic == u64::from_ne_bytes(MAGIC) {
                Err(HeaderProblem::NotReady)
            } else {
                Err(HeaderProblem::NotShmkit)
            };
        }
        // SAFETY: as above. A copy, validated before any field is used.
        let raw = unsafe { header::load(map.base()) };
        header::validate(bytemuck::bytes_of(&raw), size)
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
            && pid == crate::sys::owner::pid()
        {
            // Already gone (someone ran `shmkit rm`, or Python's resource tracker) is fine.
            let _ = sysfd::shm_unlink(name);
        }
    }
}
