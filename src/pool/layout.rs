//! The pool's shared segment: a header, one mailbox per worker, and each mailbox's ring of
//! task entries.
//!
//! ```text
//! payload: | ExitRecord (64) | Header (960) | Mailbox 0 (256) | entries 0 … | Mailbox 1 | …
//! entry:   | EntryHead (128) | argument bytes (msg) | result bytes (msg) |
//! ```
//!
//! # Mailbox protocol (one producer: the pool process; one consumer: the worker)
//!
//! - The pool writes entry `h` (slot `h % depth`, only when `h - harvested < depth`), then
//!   stores `head = h + 1` (SeqCst) and, if the worker announced `sleeping`, bumps
//!   `doorbell` and futex-wakes it.
//! - The worker runs entry `t = tail` when `head > t`: it stores `running = t + 1`, runs the
//!   task, writes the outcome and result bytes, then stores `tail = t + 1` (SeqCst) and, if the
//!   pool announced `sleepers`, bumps `completions` and futex-wakes it.
//! - The pool reads entries below `tail` (Acquire) and then advances its private `harvested`.
//!   A `tail` outside `harvested..=head` is impossible and makes the pool stop
//!   ([`PoolError::Corrupt`](super::PoolError::Corrupt)).
//! - To cancel a queued entry (its call failed) the pool sets the entry's `cancel` word; a
//!   worker that finds it set after storing `running` skips the task (outcome `CANCELLED`).
//!   Either way the entry is published through `tail`, so the pool knows when none of a
//!   call's entries can still run.
//! - Each entry carries a MAC of its code addresses and sizes under a key that never enters
//!   shared memory (the pool hands it to the manager as its start argument; workers are forks
//!   of the manager). A worker runs only entries whose MAC matches, so bytes written into the
//!   mailbox by another process cannot make it call an arbitrary address.
//! - When a worker dies, the manager (its parent) reaps it; if `running == tail + 1` the entry
//!   at `tail` was in flight: the manager writes outcome `DIED` with pid and signal, stores
//!   `tail + 1` and wakes the pool, then forks a replacement that continues at `tail`.
//!
//! Every word two processes share is an atomic; entry bodies are handed over by the
//! Release/Acquire pairs above and never accessed by two processes at once.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::process::{EXIT_RECORD_LEN, ExitRecord};
use crate::segment::Segment;

pub(crate) const HEADER_LEN: usize = 960;
pub(crate) const MAILBOX_LEN: usize = 256;
pub(crate) const ENTRY_HEAD_LEN: usize = 128;
pub(crate) const INIT_ARG_CAP: usize = 256;
pub(crate) const REASON_CAP: usize = 256;

/// Pool state word values.
pub(crate) const RUN: u32 = 0;
pub(crate) const STOP: u32 = 1;
pub(crate) const KILL: u32 = 2;

/// Manager state word values.
pub(crate) const MGR_STARTING: u32 = 0;
pub(crate) const MGR_READY: u32 = 1;
pub(crate) const MGR_BROKEN: u32 = 2;

/// Entry outcomes.
pub(crate) const OUT_NONE: u32 = 0;
pub(crate) const OUT_OK: u32 = 1;
pub(crate) const OUT_PANIC: u32 = 2;
pub(crate) const OUT_ERROR: u32 = 3;
pub(crate) const OUT_DIED: u32 = 4;
pub(crate) const OUT_CANCELLED: u32 = 5;
pub(crate) const OUT_CORRUPT: u32 = 6;
/// The worker was killed because an item ran past its timeout (see `timeout.rs`).
pub(crate) const OUT_TIMEOUT: u32 = 7;

/// Why the manager gave up (`Header::broken_kind`).
pub(crate) const BROKEN_OTHER: u32 = 0;
pub(crate) const BROKEN_INIT: u32 = 1;
pub(crate) const BROKEN_START: u32 = 2;
pub(crate) const BROKEN_CORRUPT: u32 = 3;

/// Configuration and pool-wide words, after the exit record.
///
/// The configuration is written by the pool before the manager starts and read once, and
/// validated, by the manager ([`Config`](super::config::Config)); workers use the manager's
/// private copy. Nobody trusts it later.
#[repr(C)]
pub(crate) struct Header {
    // Written once before the manager starts.
    pub pool_pid: AtomicU64,
    pub workers: AtomicU64,
    pub depth: AtomicU64,
    pub msg: AtomicU64,
    pub max_tasks: AtomicU64,
    pub init_tramp: AtomicU64,
    pub init_fn: AtomicU64,
    pub init_arg_len: AtomicU64,
    pub direct_fork: AtomicU64,
    pub start_timeout_ms: AtomicU64,
    pub init_mac: AtomicU64,
    // Pool-wide words.
    pub state: AtomicU32,
    pub manager: AtomicU32,
    pub completions: AtomicU32,
    pub sleepers: AtomicU32,
    pub reason_len: AtomicU32,
    // Why the manager gave up (written before `manager = MGR_BROKEN`).
    pub broken_kind: AtomicU32,
    pub broken_pid: AtomicU32,
    pub broken_field: AtomicU32,
    pub broken_value: AtomicU64,
    /// Bytes of each worker's stderr the manager keeps (0: not captured). Configuration.
    pub stderr_tail: AtomicU64,
    /// When the manager will next look at item deadlines (CLOCK_MONOTONIC ns, `u64::MAX`:
    /// not before it is rung). A worker that starts an item due earlier rings it.
    pub mgr_wake_ns: AtomicU64,
    /// Rung (futex) when the manager hands its spare worker a mailbox (by storing the spare's
    /// pid as the mailbox's `pid`; see `supervisor.rs`).
    pub spare_bell: AtomicU32,
    pub init_arg: [u8; INIT_ARG_CAP],
    pub reason: [u8; REASON_CAP],
}

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_LEN);

/// One worker's mailbox. Pool-written words, worker-written words and manager-written words
/// sit on separate cache lines.
#[repr(C)]
pub(crate) struct Mailbox {
    // Written by the pool.
    pub head: AtomicU32,
    pub doorbell: AtomicU32,
    _p0: [u32; 14],
    // Written by the worker (and by the manager once the worker is dead).
    pub tail: AtomicU32,
    pub running: AtomicU32,
    pub sleeping: AtomicU32,
    /// The pid of the worker once it has run its initializer and takes tasks.
    pub ready: AtomicU32,
    /// The item of the running entry that the worker is on (items before it are done).
    pub item: AtomicU32,
    /// Result bytes of the done items of the running entry.
    pub item_bytes: AtomicU32,
    /// When the current item started (CLOCK_MONOTONIC ns), 0 when it has no timeout.
    pub item_start_ns: AtomicU64,
    /// The current item's timeout in ms (0: none).
    pub item_limit_ms: AtomicU32,
    _p1: [u32; 7],
    // Written by the manager.
    pub pid: AtomicU32,
    pub generation: AtomicU32,
    pub deaths: AtomicU32,
    _p2: [u32; 13],
    // Written by a worker whose initializer failed.
    pub init_error_len: AtomicU32,
    pub init_error: [u8; 60],
}

const _: () = assert!(std::mem::size_of::<Mailbox>() == MAILBOX_LEN);

/// The fixed part of a task entry.
#[repr(C)]
pub(crate) struct EntryHead {
    pub tramp: AtomicU64,
    pub func: AtomicU64,
    /// MAC of (worker, ring index, tramp, func, count, arg_len) under the pool's key.
    pub mac: AtomicU64,
    pub count: AtomicU32,
    pub arg_len: AtomicU32,
    pub outcome: AtomicU32,
    pub res_len: AtomicU32,
    pub died_pid: AtomicU32,
    pub died_signal: AtomicU32,
    /// Set by the pool: skip this entry if it has not started.
    pub cancel: AtomicU32,
    /// Failed entries: the item (within the entry) that failed; those before it are done.
    pub died_item: AtomicU32,
    /// Failed entries: result bytes of the done items; the failure's text (panic message,
    /// last words) follows them, up to `res_len`.
    pub msg_at: AtomicU32,
    /// Set by the pool: each item's timeout in ms (0: none).
    pub timeout_ms: AtomicU32,
    /// `OUT_DIED` by a timeout kill that came after the worker had moved on to the next
    /// item: that item did nothing wrong and runs again (1), or not (0).
    pub requeue: AtomicU32,
    /// `OUT_TIMEOUT`: how long the item ran, in microseconds.
    pub ran_us: AtomicU64,
    _pad: [u32; 12],
}

const _: () = assert!(std::mem::size_of::<EntryHead>() == ENTRY_HEAD_LEN);

/// Sizes of a pool segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    pub workers: usize,
    pub depth: usize,
    pub msg: usize,
}

impl Shape {
    pub fn entry_len(&self) -> usize {
        ENTRY_HEAD_LEN + 2 * self.msg
    }

    fn worker_len(&self) -> usize {
        MAILBOX_LEN + self.depth * self.entry_len()
    }

    pub fn total(&self) -> usize {
        EXIT_RECORD_LEN + HEADER_LEN + self.workers * self.worker_len()
    }

    /// [`total`](Self::total) without overflow, for shapes read from shared memory.
    pub fn checked_total(&self) -> Option<usize> {
        let entry = self.msg.checked_mul(2)?.checked_add(ENTRY_HEAD_LEN)?;
        let worker = self.depth.checked_mul(entry)?.checked_add(MAILBOX_LEN)?;
        self.workers.checked_mul(worker)?.checked_add(EXIT_RECORD_LEN + HEADER_LEN)
    }
}

/// Typed views over a mapped pool segment. All views are shared references to atomics or
/// raw pointers to entry bodies; see the module docs for who may touch what, and when.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    seg: &'a Segment,
    shape: Shape,
}

impl<'a> View<'a> {
    /// A view with a shape that fits the segment: the creator's, or one the manager read
    /// and checked ([`Config::load`](super::config::Config::load)). `None` if it does not fit.
    pub fn with_shape(seg: &'a Segment, shape: Shape) -> Option<View<'a>> {
        (shape.workers > 0 && shape.depth > 0 && shape.checked_total().is_some_and(|t| t <= seg.len()))
            .then_some(View { seg, shape })
    }

    /// A view with a shape that [`with_shape`](Self::with_shape) accepted for this segment
    /// before.
    ///
    /// # Safety
    ///
    /// `with_shape(seg, shape)` returned `Some` (the shape fits the segment).
    pub unsafe fn assume(seg: &'a Segment, shape: Shape) -> View<'a> {
        View { seg, shape }
    }

    /// The header of a segment of at least `EXIT_RECORD_LEN + HEADER_LEN` bytes.
    pub fn header_of(seg: &Segment) -> Option<&Header> {
        if seg.len() < EXIT_RECORD_LEN + HEADER_LEN {
            return None;
        }
        // SAFETY: in bounds (checked above); the mapping is page aligned, so the header is
        // 64-aligned; Header is atomics and byte arrays, valid for any bit pattern.
        Some(unsafe { &*seg.as_ptr().add(EXIT_RECORD_LEN).cast::<Header>() })
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    pub fn exit_record(&self) -> &'a ExitRecord {
        ExitRecord::of(self.seg)
    }

    pub fn header(&self) -> &'a Header {
        // SAFETY: `with_shape` checked that the segment holds the header and every mailbox.
        unsafe { &*self.seg.as_ptr().add(EXIT_RECORD_LEN).cast::<Header>() }
    }

    fn worker_base(&self, w: usize) -> *mut u8 {
        assert!(w < self.shape.workers, "worker index out of range");
        self.seg.as_ptr().wrapping_add(EXIT_RECORD_LEN + HEADER_LEN + w * self.shape.worker_len())
    }

    /// The broken-pool reason text area; see [`reason_area`].
    pub fn reason_area(&self) -> *mut u8 {
        reason_area(self.seg)
    }

    /// The initializer argument area (`INIT_ARG_CAP` bytes), as a raw pointer: written by
    /// the pool before the manager starts.
    pub fn init_arg_area(&self) -> *mut u8 {
        let hdr = self.seg.as_ptr().wrapping_add(EXIT_RECORD_LEN).cast::<Header>();
        // SAFETY: only computes a field address inside the mapped header.
        unsafe { std::ptr::addr_of_mut!((*hdr).init_arg).cast() }
    }

    /// Worker `w`'s initializer-error text area (60 bytes), as a raw pointer.
    pub fn init_error_area(&self, w: usize) -> *mut u8 {
        let mb = self.worker_base(w).cast::<Mailbox>();
        // SAFETY: only computes a field address inside the mapped mailbox.
        unsafe { std::ptr::addr_of_mut!((*mb).init_error).cast() }
    }

    pub fn mailbox(&self, w: usize) -> &'a Mailbox {
        // SAFETY: in bounds (index checked, shape matches the segment), 64-aligned, atomics
        // and padding only.
        unsafe { &*self.worker_base(w).cast::<Mailbox>() }
    }

    /// The entry slot that ring index `i` of worker `w` uses.
    pub fn entry(&self, w: usize, i: u32) -> Entry<'a> {
        let slot = i as usize % self.shape.depth;
        let base = self.worker_base(w).wrapping_add(MAILBOX_LEN + slot * self.shape.entry_len());
        // SAFETY: in bounds and 64-aligned; EntryHead is atomics and padding only.
        let head = unsafe { &*base.cast::<EntryHead>() };
        Entry { head, body: base.wrapping_add(ENTRY_HEAD_LEN), msg: self.shape.msg }
    }
}

/// One task entry: its head, and raw access to its argument and result areas.
#[derive(Clone, Copy)]
pub(crate) struct Entry<'a> {
    pub head: &'a EntryHead,
    body: *mut u8,
    msg: usize,
}

impl Entry<'_> {
    pub fn arg_ptr(&self) -> *mut u8 {
        self.body
    }

    pub fn res_ptr(&self) -> *mut u8 {
        self.body.wrapping_add(self.msg)
    }

    pub fn msg(&self) -> usize {
        self.msg
    }

    /// Record a failed outcome at item `item` of the entry, whose done items wrote `done`
    /// result bytes, with a text (panic or error message, last words) after those bytes.
    ///
    /// # Safety
    ///
    /// The caller must own the entry's result area (the worker running it, or the manager
    /// after the worker died), per the mailbox protocol.
    pub unsafe fn set_failure(&self, outcome: u32, item: u32, done: u32, text: &str) {
        let at = (done as usize).min(self.msg);
        let bytes = crate::process::truncate_utf8(text, self.msg - at);
        // SAFETY: `at + bytes.len() <= msg` bytes into the result area, which the caller owns.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.res_ptr().add(at), bytes.len()) };
        self.head.died_item.store(item, Ordering::Relaxed);
        self.head.msg_at.store(at as u32, Ordering::Relaxed);
        self.head.res_len.store((at + bytes.len()) as u32, Ordering::Relaxed);
        self.head.outcome.store(outcome, Ordering::Relaxed);
    }
}

/// The broken-pool reason text area (`REASON_CAP` bytes) of a segment that holds a header
/// (see [`View::header_of`]), as a raw pointer: it is written by the manager and read by the
/// pool, ordered by `reason_len`.
pub(crate) fn reason_area(seg: &Segment) -> *mut u8 {
    let hdr = seg.as_ptr().wrapping_add(EXIT_RECORD_LEN).cast::<Header>();
    // SAFETY: only computes a field address; callers hold a segment with a header.
    unsafe { std::ptr::addr_of_mut!((*hdr).reason).cast() }
}

/// Copy a short text into a fixed area and publish its length (Release).
pub(crate) fn write_text(area: *mut u8, cap: usize, len_word: &AtomicU32, text: &str) {
    let bytes = crate::process::truncate_utf8(text, cap);
    // SAFETY: `area` has `cap` writable bytes (callers pass a field of a mapped struct) and
    // the text is read only after the length is published.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), area, bytes.len()) };
    len_word.store(bytes.len() as u32, Ordering::Release);
}

/// Read a text written by [`write_text`].
pub(crate) fn read_text(area: *const u8, cap: usize, len_word: &AtomicU32) -> String {
    let len = (len_word.load(Ordering::Acquire) as usize).min(cap);
    // SAFETY: `area` has `cap` readable bytes and was written before the length was published.
    let bytes = unsafe { std::slice::from_raw_parts(area, len) };
    String::from_utf8_lossy(bytes).into_owned()
}
