//! A shared mapping together with the descriptor whose shared `flock` marks it live.

use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use memmap2::{MmapOptions, MmapRaw};

use crate::sys;

/// `MAP_SHARED` mapping of a whole segment file, plus the descriptor that holds the
/// shared `flock` (the liveness token: a segment is stale when nobody holds it).
///
/// A mapping starts *private to the segment layer*: only the code that validates and
/// publishes headers has seen its addresses, so no lock can have been taken inside it.
/// [`expose`](Self::expose) marks the moment its addresses are handed out (to `init`, to
/// the typed wrappers, to the user); from then on a lock in it may be held, and it is
/// kept mapped past its drop while a lock held by this process lies inside it (see
/// `sys::held`).
pub(crate) struct Mapping {
    map: ManuallyDrop<MmapRaw>,
    fd: ManuallyDrop<OwnedFd>,
    exposed: bool,
}

impl Mapping {
    /// Map `len` bytes of `fd` shared, read-write. The caller already holds `LOCK_SH` on `fd`.
    pub(crate) fn new(fd: OwnedFd, len: usize) -> std::io::Result<Self> {
        let map = MmapOptions::new().len(len).map_raw(&fd)?;
        Ok(Self { map: ManuallyDrop::new(map), fd: ManuallyDrop::new(fd), exposed: false })
    }

    /// Mark the mapping's addresses as handed out: a lock may be taken inside it from now on.
    pub(crate) fn expose(mut self) -> Self {
        self.exposed = true;
        self
    }

    /// Start of the mapping (page aligned).
    pub(crate) fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Unmap a mapping that was never exposed and keep its descriptor (and so its
    /// `flock`), to map again: how `open` retries while a creator is still initialising.
    pub(crate) fn into_fd(self) -> OwnedFd {
        debug_assert!(!self.exposed, "an exposed mapping is never remapped");
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so each field is taken out exactly once; the
        // mapping was never exposed (the only caller remaps an unpublished segment), so no
        // held lock lies inside it and it may be unmapped.
        unsafe {
            ManuallyDrop::drop(&mut this.map);
            ManuallyDrop::take(&mut this.fd)
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.exposed && sys::held::any_held_in(self.map.as_ptr() as usize, self.map.len()) {
            // Some thread of this process holds a robust lock inside this mapping (a
            // forgotten guard): unmapping could let glibc's robust list walk into unmapped
            // memory. Keep the mapping and its liveness lock until exit instead. Any other
            // mapping (never exposed, or holding no held lock) is unmapped.
            return;
        }
        // SAFETY: neither field is used again; this is the only place they are dropped.
        unsafe {
            ManuallyDrop::drop(&mut self.map);
            ManuallyDrop::drop(&mut self.fd);
        }
    }
}
