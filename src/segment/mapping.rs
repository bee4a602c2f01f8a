//! A shared mapping together with the descriptor whose shared `flock` marks it live.

use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use memmap2::{MmapOptions, MmapRaw};

use crate::sys;

/// `MAP_SHARED` mapping of a whole segment file, plus the descriptor that holds the
/// shared `flock` (the liveness token: a segment is stale when nobody holds it).
pub(crate) struct Mapping {
    map: ManuallyDrop<MmapRaw>,
    fd: ManuallyDrop<OwnedFd>,
}

impl Mapping {
    /// Map `len` bytes of `fd` shared, read-write. The caller already holds `LOCK_SH` on `fd`.
    pub(crate) fn new(fd: OwnedFd, len: usize) -> std::io::Result<Self> {
        let map = MmapOptions::new().len(len).map_raw(&fd)?;
        Ok(Self { map: ManuallyDrop::new(map), fd: ManuallyDrop::new(fd) })
    }

    /// Start of the mapping (page aligned).
    pub(crate) fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if sys::held::any_held() {
            // Some thread of this process holds a robust lock, maybe inside this mapping
            // (a forgotten guard): unmapping could let glibc's robust list walk into
            // unmapped memory. Keep the mapping and its liveness lock until exit instead.
            return;
        }
        // SAFETY: neither field is used again; this is the only place they are dropped.
        unsafe {
            ManuallyDrop::drop(&mut self.map);
            ManuallyDrop::drop(&mut self.fd);
        }
    }
}
