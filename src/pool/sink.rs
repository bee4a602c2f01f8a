//! Where results go: a `Cell` per `apply_async`/`imap` task, a `Batch` per `map` call, and
//! the decoding of a finished entry's outcome into one of them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::PoolError;
use super::config::Corrupt;
use super::layout::{Entry, OUT_CANCELLED, OUT_CORRUPT, OUT_DIED, OUT_ERROR, OUT_OK, OUT_PANIC, OUT_TIMEOUT};
use super::results::Board;

/// Runs in the pool's process with the outcome of an `apply_async` task.
pub(crate) type Callback = Box<dyn FnOnce(Result<&[u8], &PoolError>) + Send>;

/// One task's result, for `apply_async` and `imap`.
#[derive(Default)]
pub(crate) struct Cell {
    done: AtomicBool,
    state: Mutex<CellState>,
}

#[derive(Default)]
struct CellState {
    result: Option<Result<Vec<u8>, PoolError>>,
    callback: Option<Callback>,
}

impl Cell {
    pub fn with_callback(cb: Option<Callback>) -> Self {
        Cell { done: AtomicBool::new(false), state: Mutex::new(CellState { result: None, callback: cb }) }
    }

    /// A cell that holds `e` already (an input that failed before it could be submitted).
    pub fn failed(e: PoolError) -> Self {
        Cell { done: AtomicBool::new(true), state: Mutex::new(CellState { result: Some(Err(e)), callback: None }) }
    }

    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Take the result once it is done (`None` if not done or taken already).
    pub fn take(&self) -> Option<Result<Vec<u8>, PoolError>> {
        if !self.is_done() {
            return None;
        }
        self.state.lock().unwrap_or_else(PoisonError::into_inner).result.take()
    }
}

/// Result bytes, and the first error with its item index.
type BatchOut = (Vec<u8>, Option<(usize, PoolError)>);

/// Results of a `map`: `elem` bytes per item, the first error by item index.
pub(crate) struct Batch {
    elem: usize,
    remaining: AtomicUsize,
    out: Mutex<BatchOut>,
}

impl Batch {
    pub fn new(items: usize, elem: usize) -> Self {
        Batch { elem, remaining: AtomicUsize::new(items), out: Mutex::new((vec![0; items * elem], None)) }
    }

    pub fn is_done(&self) -> bool {
        self.remaining.load(Ordering::Acquire) == 0
    }

    /// Items not finished yet.
    pub fn remaining(&self) -> usize {
        self.remaining.load(Ordering::Acquire)
    }

    /// Whether some item has failed already.
    pub fn failed(&self) -> bool {
        self.out.lock().unwrap_or_else(PoisonError::into_inner).1.is_some()
    }

    /// The bytes, or the error of the lowest failed item.
    pub fn finish(&self) -> Result<Vec<u8>, PoolError> {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        match out.1.take() {
            Some((_, e)) => Err(e),
            None => Ok(std::mem::take(&mut out.0)),
        }
    }
}

/// Where a harvested entry's result goes.
pub(crate) enum Sink {
    Cell(Arc<Cell>),
    Batch {
        batch: Arc<Batch>,
        first: usize,
        count: usize,
    },
    /// Items of a `*_results` call: each gets its own result, see `results.rs`.
    Items {
        board: Arc<Board>,
        first: usize,
        count: usize,
    },
}

impl Sink {
    /// Whether this sink belongs to `batch`.
    pub fn is_batch(&self, batch: &Arc<Batch>) -> bool {
        matches!(self, Sink::Batch { batch: b, .. } if Arc::ptr_eq(b, batch))
    }

    /// Whether this sink is `cell`.
    pub fn is_cell(&self, cell: &Arc<Cell>) -> bool {
        matches!(self, Sink::Cell(c) if Arc::ptr_eq(c, cell))
    }
}

/// Callbacks whose cells were just filled, to run outside every lock.
pub(crate) type Fired = Vec<(Arc<Cell>, Callback)>;

/// The result bytes of a finished entry: all of them (`OUT_OK`), or for a failed entry the
/// done items' results and then the failure's text (from `msg_at`).
pub(crate) fn result_bytes<'a>(entry: &Entry<'a>) -> &'a [u8] {
    let len = (entry.head.res_len.load(Ordering::Relaxed) as usize).min(entry.msg());
    // SAFETY: the worker published this entry (tail, Acquire) and no longer touches it; the
    // result area is `msg` bytes inside the mapping.
    unsafe { std::slice::from_raw_parts(entry.res_ptr(), len) }
}

/// The result an entry holds: its bytes, or the error of its failed item.
pub(crate) fn outcome<'a>(entry: &Entry<'a>) -> Result<&'a [u8], PoolError> {
    let h = entry.head;
    let bytes = result_bytes(entry);
    let pid = h.died_pid.load(Ordering::Relaxed);
    let at = (h.msg_at.load(Ordering::Relaxed) as usize).min(bytes.len());
    let text = || String::from_utf8_lossy(&bytes[at..]).into_owned();
    match h.outcome.load(Ordering::Relaxed) {
        OUT_OK => Ok(bytes),
        OUT_PANIC => Err(PoolError::TaskPanicked { pid, message: text() }),
        OUT_ERROR => Err(PoolError::TaskFailed { message: text() }),
        OUT_DIED => {
            let s = h.died_signal.load(Ordering::Relaxed);
            if s & 0x100 != 0 {
                Err(PoolError::WorkerExited { pid, code: (s & 0xff) as i32 })
            } else {
                Err(PoolError::WorkerDied { pid, signal: s as i32 })
            }
        }
        OUT_TIMEOUT => Err(PoolError::TaskTimedOut {
            pid,
            ran: std::time::Duration::from_micros(h.ran_us.load(Ordering::Relaxed)),
            limit: std::time::Duration::from_millis(u64::from(h.timeout_ms.load(Ordering::Relaxed))),
        }),
        OUT_CORRUPT => Err(Corrupt::new("entry.mac", h.mac.load(Ordering::Relaxed)).into()),
        OUT_CANCELLED => Err(PoolError::TaskFailed { message: "cancelled: another task of its call failed".into() }),
        other => Err(Corrupt::new("entry.outcome", u64::from(other)).into()),
    }
}

/// Hand a finished entry's result to its sink.
pub(crate) fn deliver(entry: &Entry<'_>, sink: Sink, fired: &mut Fired) {
    if entry.head.outcome.load(Ordering::Relaxed) == OUT_CANCELLED
        && let Sink::Batch { batch, count, .. } = &sink
    {
        // Skipped because its call failed already: that call reports the first failure.
        batch.remaining.fetch_sub(*count, Ordering::AcqRel);
        return;
    }
    if let Sink::Items { board, first, count } = &sink {
        board.deliver(entry, *first, *count);
        return;
    }
    let res = outcome(entry);
    match sink {
        Sink::Items { .. } => {}
        Sink::Cell(cell) => set_cell(cell, res.map(<[u8]>::to_vec), fired),
        Sink::Batch { batch, first, count } => {
            let mut out = batch.out.lock().unwrap_or_else(PoisonError::into_inner);
            match res {
                Ok(bytes) => {
                    let want = count * batch.elem;
                    if bytes.len() == want {
                        out.0[first * batch.elem..first * batch.elem + want].copy_from_slice(bytes);
                    } else if out.1.as_ref().is_none_or(|(i, _)| first < *i) {
                        let e =
                            PoolError::TaskFailed { message: "a worker returned a result of the wrong size".into() };
                        out.1 = Some((first, e));
                    }
                }
                Err(e) => {
                    if out.1.as_ref().is_none_or(|(i, _)| first < *i) {
                        out.1 = Some((first, e));
                    }
                }
            }
            drop(out);
            batch.remaining.fetch_sub(count, Ordering::AcqRel);
        }
    }
}

/// Fail a sink whose entry will never be harvested.
pub(crate) fn fail(sink: Sink, e: PoolError, fired: &mut Fired) {
    match sink {
        Sink::Items { board, first, count } => board.fail(first, count, &e),
        Sink::Cell(cell) => set_cell(cell, Err(e), fired),
        Sink::Batch { batch, first, count } => {
            let mut out = batch.out.lock().unwrap_or_else(PoisonError::into_inner);
            if out.1.as_ref().is_none_or(|(i, _)| first < *i) {
                out.1 = Some((first, e));
            }
            drop(out);
            batch.remaining.fetch_sub(count, Ordering::AcqRel);
        }
    }
}

fn set_cell(cell: Arc<Cell>, r: Result<Vec<u8>, PoolError>, fired: &mut Fired) {
    let mut st = cell.state.lock().unwrap_or_else(PoisonError::into_inner);
    st.result = Some(r);
    let cb = st.callback.take();
    drop(st);
    match cb {
        Some(cb) => fired.push((cell, cb)),
        None => cell.done.store(true, Ordering::Release),
    }
}

/// Run a fired callback with its cell's result (a panic in it is contained), then mark the
/// cell done.
pub(crate) fn run_fired(cell: &Cell, cb: Callback) {
    {
        let st = cell.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = st.result.as_ref() {
            let r = r.as_ref().map(Vec::as_slice);
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(r)));
        }
    }
    cell.done.store(true, Ordering::Release);
}

/// Callbacks fired while failing everything run on a short-lived thread, so that no lock is
/// held while user code runs.
pub(crate) fn drop_fired_elsewhere(fired: Fired) {
    if fired.is_empty() {
        return;
    }
    let run = move || {
        for (cell, cb) in fired {
            run_fired(&cell, cb);
        }
    };
    if let Err(e) = std::thread::Builder::new().name("shmkit-pool-callbacks".into()).spawn(run) {
        drop(e);
    }
}
