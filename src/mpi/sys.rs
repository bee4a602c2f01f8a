//! Thin unsafe wrappers over the MPI-3 shared-window calls that rsmpi does not wrap
//! (`MPI_Win_allocate_shared`, `MPI_Win_shared_query`, passive-target epochs, `MPI_Win_sync`,
//! `MPI_Win_free`), in the style of `crate::sys`: one call each, error codes checked, no
//! policy. The safe API on top is [`NodeArray`](super::NodeArray).

use std::ffi::{c_int, c_void};
use std::ptr::NonNull;

use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::topology::SimpleCommunicator;

use super::MpiError;

fn check(op: &'static str, code: c_int) -> Result<(), MpiError> {
    if code == ffi::MPI_SUCCESS as c_int { Ok(()) } else { Err(MpiError::Call { op, code }) }
}

/// Whether `MPI_Finalize` has run (after which no MPI call but this one is allowed).
pub(crate) fn finalized() -> bool {
    let mut flag: c_int = 0;
    // SAFETY: MPI_Finalized may be called at any time, even before MPI_Init and after
    // MPI_Finalize; `flag` is a valid out-pointer for the duration of the call.
    let code = unsafe { ffi::MPI_Finalized(&mut flag) };
    code != ffi::MPI_SUCCESS as c_int || flag != 0
}

/// One shared-memory window: this process's part of it and the handle. Freed explicitly by
/// [`SharedWin::free`] (a collective call), never on drop.
#[derive(Debug)]
pub(crate) struct SharedWin {
    win: ffi::MPI_Win,
    freed: bool,
}

impl SharedWin {
    /// `MPI_Win_allocate_shared` of `bytes` bytes on every process of `comm` (each its own
    /// size), then `MPI_Win_lock_all(MPI_MODE_NOCHECK)`: the window stays in one passive-target
    /// epoch for its whole life, so that `MPI_Win_sync` may be used as the memory barrier of
    /// the unified model. Returns the window and this process's base address.
    ///
    /// # Safety
    ///
    /// Collective: every process of `comm` must make the matching call (same order of
    /// collectives on `comm`). `comm` must be an intra-communicator whose processes can share
    /// memory (made by `MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)` or a split of one).
    pub(crate) unsafe fn allocate(comm: &SimpleCommunicator, bytes: usize) -> Result<(Self, *mut u8), MpiError> {
        let size = ffi::MPI_Aint::try_from(bytes).map_err(|_| MpiError::TooLarge { bytes })?;
        let mut base: *mut c_void = std::ptr::null_mut();
        // SAFETY: MPI_WIN_NULL is a plain handle value exported by rsmpi's C shim.
        let mut win = unsafe { ffi::RSMPI_WIN_NULL };
        // SAFETY: `comm` is a live communicator (borrowed for the call) of processes that share
        // memory, the call is collective as the caller promises, MPI_INFO_NULL is a valid info,
        // and `base` / `win` are valid out-pointers (`baseptr` is documented as `void *` that
        // actually receives a `void **`).
        let code = unsafe {
            ffi::MPI_Win_allocate_shared(
                size,
                1,
                ffi::RSMPI_INFO_NULL,
                comm.as_raw(),
                (&mut base as *mut *mut c_void).cast::<c_void>(),
                &mut win,
            )
        };
        check("MPI_Win_allocate_shared", code)?;
        let mut this = SharedWin { win, freed: false };
        // SAFETY: `win` was just created by MPI_Win_allocate_shared and is not in an epoch;
        // MPI_MODE_NOCHECK is valid for lock_all (nobody takes exclusive locks on it).
        let code = unsafe { ffi::MPI_Win_lock_all(ffi::MPI_MODE_NOCHECK as c_int, this.win) };
        if let Err(e) = check("MPI_Win_lock_all", code) {
            // SAFETY: the window is live and not locked; every process fails the same way
            // (a lock_all error is local), so the collective free matches.
            unsafe { this.free_unlocked() };
            return Err(e);
        }
        Ok((this, base.cast::<u8>()))
    }

    /// `MPI_Win_shared_query`: the size in bytes and base address of `rank`'s part.
    /// A part of size 0 may come back with a null base: it is then a dangling, aligned pointer.
    ///
    /// # Safety
    ///
    /// `rank` must be a rank of the window's communicator.
    pub(crate) unsafe fn query(&self, rank: usize) -> Result<(usize, NonNull<u8>), MpiError> {
        let r = c_int::try_from(rank).map_err(|_| MpiError::NoSuchRank { rank, size: 0 })?;
        let mut size: ffi::MPI_Aint = 0;
        let mut disp: c_int = 0;
        let mut base: *mut c_void = std::ptr::null_mut();
        // SAFETY: the window is live (not freed: `free` consumes the handle), `r` is a rank of
        // its communicator (caller), and the out-pointers are valid for the call.
        let code = unsafe {
            ffi::MPI_Win_shared_query(self.win, r, &mut size, &mut disp, (&mut base as *mut *mut c_void).cast())
        };
        check("MPI_Win_shared_query", code)?;
        let size = usize::try_from(size).map_err(|_| MpiError::Call { op: "MPI_Win_shared_query", code: -1 })?;
        Ok((size, NonNull::new(base.cast::<u8>()).unwrap_or(NonNull::dangling())))
    }

    /// `MPI_Win_sync`: a full memory barrier for the window's memory (unified model).
    pub(crate) fn sync(&self) -> Result<(), MpiError> {
        // SAFETY: the window is live and inside the lock_all epoch opened by `allocate`,
        // which MPI_Win_sync requires; it touches no Rust-visible memory.
        check("MPI_Win_sync", unsafe { ffi::MPI_Win_sync(self.win) })
    }

    /// End the epoch and free the window (`MPI_Win_unlock_all`, `MPI_Win_free`). Does nothing
    /// after `MPI_Finalize` (the memory is then leaked, not freed twice).
    ///
    /// # Safety
    ///
    /// Collective over the window's communicator. No reference into the window's memory may
    /// outlive this call.
    pub(crate) unsafe fn free(&mut self) -> Result<(), MpiError> {
        if self.freed || finalized() {
            self.freed = true;
            return Ok(());
        }
        // SAFETY: the window is live and inside the lock_all epoch opened by `allocate`.
        let unlocked = check("MPI_Win_unlock_all", unsafe { ffi::MPI_Win_unlock_all(self.win) });
        // SAFETY: collective as the caller promises; no reference into the memory outlives it.
        unsafe { self.free_unlocked() };
        unlocked
    }

    /// # Safety
    ///
    /// As [`free`](Self::free), and the window must not be in a lock_all epoch.
    unsafe fn free_unlocked(&mut self) {
        // SAFETY: the window is live (`freed` is false) and not locked; collective as promised.
        // Errors are fatal under MPI_ERRORS_ARE_FATAL and there is nothing to undo otherwise.
        let _ = unsafe { ffi::MPI_Win_free(&mut self.win) };
        self.freed = true;
    }
}
