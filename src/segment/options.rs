//! [`SegmentOptions`]: how segments are created and opened, and the raw (headerless) mode.

use std::os::fd::AsFd;
use std::time::Duration;

use super::layout::{Expect, Layout, checked_len};
use super::{Mapping, Segment, SegmentError, Target, file, name};

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
    pub(super) mode: u32,
    pub(super) reserve: bool,
    pub(super) open_timeout: Duration,
    pub(super) wait_for: Duration,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        Self { mode: 0o600, reserve: true, open_timeout: Duration::from_secs(5), wait_for: Duration::ZERO }
    }
}

impl SegmentOptions {
    /// Mode 0600, memory reserved, 5 s open timeout, no waiting for a missing name.
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

    /// How long `open` waits for a name that does not exist yet to appear (default zero:
    /// [`SegmentError::NotFound`] at once). For processes started in any order, say by a
    /// scheduler: the openers wait for the creator. The name is polled with a growing pause
    /// (at most 5 ms); once it appears, `open` waits up to
    /// [`open_timeout`](Self::open_timeout) more for the creator to publish it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmkit::{SegmentError, SegmentOptions};
    /// let name = format!("/shmkit-doc-wait-{}", std::process::id());
    /// let creator = std::thread::spawn({
    ///     let name = name.clone();
    ///     move || {
    ///         std::thread::sleep(Duration::from_millis(50));
    ///         shmkit::Segment::create(Some(&name), 64)
    ///     }
    /// });
    /// let seg = SegmentOptions::new().wait_for(Duration::from_secs(10)).open(&name)?;
    /// assert_eq!(seg.len(), 64);
    /// drop(creator.join().unwrap()?);
    /// # Ok::<(), SegmentError>(())
    /// ```
    pub fn wait_for(mut self, timeout: Duration) -> Self {
        self.wait_for = timeout;
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

    /// Open the named byte segment, or create it with `len` bytes when the name is free.
    ///
    /// Creation is `O_CREAT|O_EXCL`, so of many processes calling this at once exactly one
    /// creates ([`Segment::created`] tells which); the others open the same segment,
    /// waiting (up to the [open timeout](Self::open_timeout)) for its creator to publish
    /// it. When what exists differs in kind, element type or size, a typed error says how
    /// ([`SegmentError::KindMismatch`], [`TypeMismatch`](SegmentError::TypeMismatch),
    /// [`SizeMismatch`](SegmentError::SizeMismatch)).
    ///
    /// A creator that dies before publishing leaves an unpublished file: the others get
    /// [`SegmentError::InitTimeout`] after the open timeout, and do not take it over (a
    /// slow creator cannot be told from a dead one while they themselves hold the file).
    /// Once they have let go, [`remove_if_stale`](super::remove_if_stale) (or `shmkit gc`)
    /// removes it, and `open_or_create` can be called again.
    pub fn open_or_create(&self, name: &str, len: usize) -> Result<Segment, SegmentError> {
        Segment::open_or_create_typed(self, name, &Layout::bytes(len), |_| Ok(()), &Expect::bytes())
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
    /// Python's `SharedMemory(name, create=True, size=len)` makes it. At most
    /// [`MAX_SEGMENT_LEN`](super::MAX_SEGMENT_LEN) bytes.
    pub fn create_raw(&self, name: Option<&str>, len: usize) -> Result<Segment, SegmentError> {
        if len == 0 {
            return Err(SegmentError::ZeroLength);
        }
        let total = checked_len(len as u64)?;
        let name = match name {
            Some(n) => name::normalize(n)?,
            None => name::generate()?.replacen(name::DEFAULT_PREFIX, "/shmkit-raw-", 1),
        };
        let fd = file::create_file(self, &name, total)?;
        let guard = file::UnlinkGuard(Some(&name));
        let map = Mapping::new(fd, len).map_err(|e| SegmentError::io("mmap", &name, e))?;
        std::mem::forget(guard);
        let pid = crate::sys::owner::pid();
        Ok(Segment::assemble(map, Some(name), None, 0, len, Some(pid)))
    }

    /// Open a raw segment (any regular file in `/dev/shm`, for example one made by Python's
    /// `SharedMemory`): the payload is the whole file, no header is checked. An empty file
    /// gets a short wait for its creator to size it, then is refused
    /// ([`SegmentError::EmptyFile`]).
    pub fn open_raw(&self, name: &str) -> Result<Segment, SegmentError> {
        let name = name::normalize(name)?;
        let fd = file::open_waiting(self, &name)?;
        let len = file::wait_sized(fd.as_fd(), &name, self.open_timeout)? as usize;
        let map = Mapping::new(fd, len).map_err(|e| SegmentError::io("mmap", &name, e))?;
        Ok(Segment::assemble(map, Some(name), None, 0, len, None))
    }
}
