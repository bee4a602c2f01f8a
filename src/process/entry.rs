//! What a child runs and how its end is recorded: the entry function type, the code that
//! runs it in a fresh child, and the exit record the fork server writes for a child it
//! forked on our behalf. Shared by direct forks and the fork server.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::Duration;

use super::ExitStatus;
use crate::segment::Segment;
use crate::sys::{self, Deadline, futex};

/// What a child runs: `entry(segment, arg, extra_fds)`; the return value is its exit code.
/// A plain `fn` item, so its address is valid in any fork of this binary image.
pub(crate) type Entry = fn(&Segment, u64, &[RawFd]) -> i32;

/// Exit code of a child whose entry function panicked.
pub(crate) const EXIT_PANICKED: i32 = 101;

/// Written by the fork server when it reaps a child it forked for us; the first 64 bytes of
/// the payload of every segment handed to `spawn`.
#[repr(C)]
pub(crate) struct ExitRecord {
    state: AtomicU32,
    wait_status: AtomicI32,
    _pad: [u32; 14],
}

/// Bytes reserved for the exit record at the start of a child's segment payload.
pub(crate) const EXIT_RECORD_LEN: usize = 64;
const _: () = assert!(std::mem::size_of::<ExitRecord>() == EXIT_RECORD_LEN);

const RECORD_EMPTY: u32 = 0;
const RECORD_WRITTEN: u32 = 1;

impl ExitRecord {
    /// The record at the start of `seg`'s payload.
    pub(crate) fn of(seg: &Segment) -> &ExitRecord {
        debug_assert!(seg.len() >= EXIT_RECORD_LEN);
        // SAFETY: every segment passed to `spawn` has at least EXIT_RECORD_LEN payload bytes,
        // 64-aligned; ExitRecord is atomics and padding, valid for any bit pattern, and is
        // only accessed atomically.
        unsafe { &*seg.as_ptr().cast::<ExitRecord>() }
    }

    pub(crate) fn reset(&self) {
        self.state.store(RECORD_EMPTY, Ordering::Release);
    }

    pub(crate) fn publish(&self, status: ExitStatus) {
        let raw = match status {
            ExitStatus::Code(c) => (c & 0xff) << 8,
            ExitStatus::Signal(s) => s & 0x7f,
        };
        self.wait_status.store(raw, Ordering::Relaxed);
        self.state.store(RECORD_WRITTEN, Ordering::Release);
        futex::wake_all(&self.state);
    }

    /// The status, once the fork server has written it.
    pub(crate) fn read(&self) -> Option<ExitStatus> {
        (self.state.load(Ordering::Acquire) == RECORD_WRITTEN)
            .then(|| ExitStatus::from_raw(self.wait_status.load(Ordering::Relaxed)))
    }

    /// Sleep while the record is still empty, until `deadline` or at most `cap` (spurious
    /// returns allowed: re-check with [`ExitRecord::read`]).
    pub(crate) fn wait_written(&self, deadline: Deadline, cap: Duration) {
        futex::wait(&self.state, RECORD_EMPTY, deadline, Some(cap));
    }
}

/// In a fresh child: run the entry and leave with its code (never returns).
pub(crate) fn run_entry(entry: Entry, seg: &Segment, arg: u64, fds: &[RawFd]) -> ! {
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| entry(seg, arg, fds))).unwrap_or(EXIT_PANICKED);
    sys::process::exit_now(code)
}
