//! Per-item results for fuzz and stress campaigns: `map_results` and its siblings give every
//! input its own `Result<R, TaskError>`. A crash, a timeout or a panic fails only the input
//! it happened on; the worker is replaced and the other inputs still run, without the
//! caller submitting anything again.
//!
//! # How one entry of several items fails item by item
//!
//! Workers record, before each item, which item of the entry they are on and how many result
//! bytes the items before it wrote (`timeout::item_begin`). When an entry fails — the worker
//! died (the manager reports it), ran past its timeout (the manager killed it), or the task
//! panicked (the worker reports it) — the entry says which item (`died_item`) and where the
//! done items' results end (`msg_at`). The [`Board`] then gives the done items their
//! results, the failed item its [`TaskError`], and queues the items after it to be submitted
//! again (`retry`), by whichever call drives the board. So every input gets exactly one
//! result, and an input never runs twice unless a timeout kill reached its worker just as
//! it had moved on to it (then it did nothing wrong and runs again).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytemuck::Pod;

use super::api::{Pool, per_entry};
use super::chunks::ChunkCall;
use super::dispatch::{Core, Dispatch, Job, timeout_ms};
use super::layout::{Entry, OUT_CANCELLED, OUT_CORRUPT, OUT_DIED, OUT_OK, OUT_TIMEOUT};
use super::sink::{Sink, outcome, result_bytes};
use super::task::{Tramp, map_tramp, tramp_addr};
use super::{PoolError, TaskError};
use crate::shared::{Element, SharedArray};
use crate::sys::Deadline;

/// Options of one `*_results` call ([`Pool::map_results_with`] and its siblings).
///
/// ```
/// use std::time::Duration;
/// use shmkit::pool::{ItemOptions, Pool};
/// let pool = Pool::new(2)?;
/// let opts = ItemOptions::new().timeout(Duration::from_millis(200)).chunksize(16);
/// let out = pool.map_results_with(|x: u32| x * 2, 0..100u32, opts)?;
/// assert!(out.iter().all(Result::is_ok));
/// # Ok::<(), shmkit::pool::PoolError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ItemOptions {
    timeout: Option<Option<Duration>>,
    chunksize: Option<usize>,
}

impl ItemOptions {
    /// The pool's defaults: its [`task_timeout`](super::PoolBuilder::task_timeout), and
    /// chunks as `map` cuts them (for `imap_results`: one input per task, as Python's `imap`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Each input of this call gets at most `timeout`, instead of the pool's timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(Some(timeout));
        self
    }

    /// No timeout for this call, whatever the pool's.
    pub fn no_timeout(mut self) -> Self {
        self.timeout = Some(None);
        self
    }

    /// Inputs per task message (cut to fit the message size). A failure costs only its own
    /// input whatever the chunk size; larger chunks cost fewer round trips.
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = Some(n.max(1));
        self
    }

    /// The chunk size asked for, else `default`.
    pub(crate) fn chunk_or(&self, default: usize) -> usize {
        self.chunksize.unwrap_or(default)
    }

    pub(crate) fn timeout_ms(&self, core: &Core) -> u32 {
        match self.timeout {
            None => core.task_timeout_ms(),
            Some(t) => timeout_ms(t),
        }
    }
}

/// One finished input: its result bytes or its error.
pub(crate) type Slot = Option<Result<Vec<u8>, TaskError>>;

struct BoardState {
    /// The input index of `slots[0]`.
    base: usize,
    slots: VecDeque<Slot>,
    /// Inputs `(first, count)` to submit again (they come after a failed one in its entry).
    retry: VecDeque<(usize, usize)>,
    /// Entries submitted and not delivered yet.
    in_flight: usize,
    /// Slots filled so far.
    filled: usize,
}

/// Where the entries of one `*_results` call deliver, input by input.
pub(crate) struct Board {
    res_size: usize,
    st: Mutex<BoardState>,
}

/// Another value of a pool-wide error, for each input it fails.
fn replicate(e: &PoolError) -> PoolError {
    match e {
        PoolError::Terminated => PoolError::Terminated,
        PoolError::Closed => PoolError::Closed,
        PoolError::Broken { reason } => PoolError::Broken { reason: reason.clone() },
        PoolError::InitializerFailed { reason } => PoolError::InitializerFailed { reason: reason.clone() },
        PoolError::StartTimeout { role, pid, waited } => PoolError::StartTimeout { role, pid: *pid, waited: *waited },
        PoolError::Corrupt { field, value } => PoolError::Corrupt { field, value: *value },
        other => PoolError::Broken { reason: other.to_string() },
    }
}

fn task_error(index: usize, error: PoolError, last_words: Option<String>) -> TaskError {
    TaskError { index, error, last_words }
}

impl BoardState {
    fn put(&mut self, index: usize, r: Result<Vec<u8>, TaskError>) {
        let Some(at) = index.checked_sub(self.base) else { return };
        if self.slots.len() <= at {
            self.slots.resize_with(at + 1, || None);
        }
        let slot = &mut self.slots[at];
        debug_assert!(slot.is_none(), "input {index} got two results");
        if slot.is_none() {
            *slot = Some(r);
            self.filled += 1;
        }
    }
}

impl Board {
    pub fn new(res_size: usize) -> Arc<Board> {
        let st = BoardState { base: 0, slots: VecDeque::new(), retry: VecDeque::new(), in_flight: 0, filled: 0 };
        Arc::new(Board { res_size, st: Mutex::new(st) })
    }

    fn lock(&self) -> MutexGuard<'_, BoardState> {
        self.st.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A finished entry of inputs `first..first + count`.
    pub fn deliver(&self, entry: &Entry<'_>, first: usize, count: usize) {
        let h = entry.head;
        let rs = self.res_size;
        let mut st = self.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        let code = h.outcome.load(Ordering::Relaxed);
        let bytes = result_bytes(entry);
        match code {
            OUT_CANCELLED => {} // its call gave up on it
            OUT_OK if bytes.len() == count * rs => {
                for i in 0..count {
                    st.put(first + i, Ok(bytes[i * rs..(i + 1) * rs].to_vec()));
                }
            }
            OUT_OK | OUT_CORRUPT => {
                for i in 0..count {
                    let e = match outcome(entry) {
                        Err(e) => e,
                        Ok(_) => {
                            PoolError::TaskFailed { message: "a worker returned results of the wrong size".into() }
                        }
                    };
                    st.put(first + i, Err(task_error(first + i, e, None)));
                }
            }
            _ => {
                let k = (h.died_item.load(Ordering::Relaxed) as usize).min(count.saturating_sub(1));
                let done = (h.msg_at.load(Ordering::Relaxed) as usize).min(bytes.len());
                for i in 0..k {
                    let r = match bytes.get(i * rs..(i + 1) * rs).filter(|_| (i + 1) * rs <= done) {
                        Some(b) => Ok(b.to_vec()),
                        None => Err(task_error(
                            first + i,
                            PoolError::TaskFailed { message: "a worker lost the result of this input".into() },
                            None,
                        )),
                    };
                    st.put(first + i, r);
                }
                let again = if code == OUT_DIED && h.requeue.load(Ordering::Relaxed) == 1 {
                    k // killed just after its item finished: this one runs again
                } else {
                    let words = matches!(code, OUT_DIED | OUT_TIMEOUT)
                        .then(|| String::from_utf8_lossy(&bytes[done..]).into_owned())
                        .filter(|w| !w.is_empty());
                    let e = outcome(entry).err().unwrap_or(PoolError::TaskFailed { message: "failed".into() });
                    st.put(first + k, Err(task_error(first + k, e, words)));
                    k + 1
                };
                if again < count {
                    st.retry.push_back((first + again, count - again));
                }
            }
        }
    }

    /// Inputs `first..first + count` will never run: the pool stopped.
    pub fn fail(&self, first: usize, count: usize, e: &PoolError) {
        let mut st = self.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        for i in first..first + count {
            st.put(i, Err(task_error(i, replicate(e), None)));
        }
    }

    /// Inputs with a result so far.
    pub fn filled(&self) -> usize {
        self.lock().filled
    }

    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// Every input below `end` without a result (not submitted, or waiting to be submitted
    /// again) fails with `e`; nothing will be submitted any more.
    pub fn fail_rest(&self, end: usize, e: &PoolError) {
        let mut st = self.lock();
        st.retry.clear();
        for i in st.base..end {
            let at = i - st.base;
            if st.slots.get(at).is_none_or(Option::is_none) {
                st.put(i, Err(task_error(i, replicate(e), None)));
            }
        }
    }

    /// The front input's result, if it has one (ordered consumption: `imap_results`).
    pub fn pop_front(&self) -> Option<(usize, Result<Vec<u8>, TaskError>)> {
        let mut st = self.lock();
        let r = st.slots.front_mut()?.take()?;
        st.slots.pop_front();
        let index = st.base;
        st.base += 1;
        Some((index, r))
    }

    /// Every result, in input order (`n` inputs, all filled).
    pub fn take_all(&self) -> Vec<Slot> {
        std::mem::take(&mut self.lock().slots).into()
    }
}

/// The code, arguments and timing of one `*_results` call, for submitting its inputs.
pub(crate) struct Feed {
    pub board: Arc<Board>,
    pub tramp: u64,
    pub func: u64,
    /// Argument bytes per input.
    pub step: usize,
    /// Inputs per entry.
    pub per: usize,
    pub timeout_ms: u32,
}

impl Feed {
    /// Submit inputs `first..first + count` (arguments from `args`) as one entry; `false`
    /// when every ring is full.
    fn submit(
        &self,
        core: &Core,
        d: &mut Dispatch,
        args: &[u8],
        first: usize,
        count: usize,
    ) -> Result<bool, PoolError> {
        let part = [args];
        let job = Job { tramp: self.tramp, func: self.func, count: count as u32, args: &part };
        let sink = Sink::Items { board: Arc::clone(&self.board), first, count };
        // Counted first: the entry may be delivered before `try_submit_timed` returns.
        self.board.lock().in_flight += 1;
        let ok = core.try_submit_timed(d, &job, sink, self.timeout_ms);
        if !matches!(ok, Ok(true)) {
            let mut st = self.board.lock();
            st.in_flight = st.in_flight.saturating_sub(1);
        }
        ok
    }

    /// Submit inputs waiting to run again, then new ones from `*next` up to `end`, while
    /// the rings have room. `args(first, count)` gives the argument bytes of inputs.
    pub fn feed<'a>(
        &self,
        core: &Core,
        d: &mut Dispatch,
        args: &dyn Fn(usize, usize) -> &'a [u8],
        next: &mut usize,
        end: usize,
    ) -> Result<(), PoolError> {
        loop {
            let again = self.board.lock().retry.pop_front();
            let Some((first, count)) = again else { break };
            let take = count.min(self.per);
            if !self.submit(core, d, args(first, take), first, take)? {
                self.board.lock().retry.push_front((first, count));
                return Ok(());
            }
            if take < count {
                self.board.lock().retry.push_front((first + take, count - take));
            }
        }
        while *next < end {
            let count = self.per.min(end - *next);
            if !self.submit(core, d, args(*next, count), *next, count)? {
                break;
            }
            *next += count;
        }
        Ok(())
    }
}

/// `n` results of `R` from the board's slots.
// The public shape is one `Result<R, TaskError>` per input; these only move them.
#[allow(clippy::result_large_err)]
pub(crate) fn decode_slots<R: Pod>(slots: Vec<Slot>) -> Vec<Result<R, TaskError>> {
    slots.into_iter().enumerate().map(|(i, s)| decode_one(i, s)).collect()
}

/// One input's result as `R`.
#[allow(clippy::result_large_err)]
pub(crate) fn decode_one<R: Pod>(index: usize, slot: Slot) -> Result<R, TaskError> {
    match slot {
        Some(Ok(b)) if b.len() == std::mem::size_of::<R>() => Ok(bytemuck::pod_read_unaligned(&b)),
        Some(Ok(_)) => Err(task_error(
            index,
            PoolError::TaskFailed { message: "a worker returned a result of the wrong size".into() },
            None,
        )),
        Some(Err(e)) => Err(e),
        None => Err(task_error(index, PoolError::TaskFailed { message: "no result came back".into() }, None)),
    }
}

impl Pool {
    /// `f` over every input, each with its own result: a crash (its pid and signal), a
    /// timeout or a panic fails only that input, as a [`TaskError`] with the input's index;
    /// the worker is replaced and every other input still runs. For fuzz and stress
    /// campaigns. The outer `Err` only when nothing could start (a closed pool, an argument
    /// too large); if the pool itself stops midway, the inputs that did not run say so.
    ///
    /// ```
    /// use shmkit::pool::Pool;
    /// let pool = Pool::new(2)?;
    /// let out = pool.map_results(|x: u32| if x == 3 { std::process::abort() } else { x * 10 }, 0..6u32)?;
    /// assert_eq!(out[2].as_ref().unwrap(), &20);
    /// let e = out[3].as_ref().unwrap_err();
    /// assert!(e.is_crash() && e.index == 3, "{e}");
    /// assert_eq!(out[5].as_ref().unwrap(), &50);
    /// # Ok::<(), shmkit::pool::PoolError>(())
    /// ```
    pub fn map_results<A: Pod, R: Pod>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<Result<R, TaskError>>, PoolError> {
        self.map_results_with(f, items, ItemOptions::new())
    }

    /// [`map_results`](Self::map_results) with this call's timeout and chunk size.
    pub fn map_results_with<A: Pod, R: Pod>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        opts: ItemOptions,
    ) -> Result<Vec<Result<R, TaskError>>, PoolError> {
        let items: Vec<A> = items.into_iter().collect();
        let chunk = opts.chunk_or(items.len().div_ceil(self.processes() * 4).max(1));
        let feed = Feed {
            board: Board::new(std::mem::size_of::<R>()),
            tramp: tramp_addr!(Tramp, map_tramp::<A, R>),
            func: f as usize as u64,
            step: std::mem::size_of::<A>(),
            per: per_entry::<A, R>(chunk, self.core.shape().msg)?,
            timeout_ms: opts.timeout_ms(&self.core),
        };
        self.run_items(&feed, bytemuck::cast_slice(&items), items.len()).map(decode_slots)
    }

    /// `f(start, &chunk)` for every chunk of `array`, as [`map_chunks`](Self::map_chunks),
    /// each chunk with its own result as in [`map_results`](Self::map_results).
    pub fn map_chunks_results<T: Element, R: Pod>(
        &self,
        array: &SharedArray<T>,
        chunk_len: usize,
        f: fn(usize, &[T]) -> R,
    ) -> Result<Vec<Result<R, TaskError>>, PoolError> {
        self.map_chunks_results_with(array, chunk_len, f, ItemOptions::new())
    }

    /// [`map_chunks_results`](Self::map_chunks_results) with this call's timeout.
    pub fn map_chunks_results_with<T: Element, R: Pod>(
        &self,
        array: &SharedArray<T>,
        chunk_len: usize,
        f: fn(usize, &[T]) -> R,
        opts: ItemOptions,
    ) -> Result<Vec<Result<R, TaskError>>, PoolError> {
        self.chunk_items(array, chunk_len, ChunkCall::read(f), opts).map(decode_slots)
    }

    /// `f(start, &mut chunk)` for every chunk of `array`, as
    /// [`map_chunks_mut`](Self::map_chunks_mut), each chunk with its own result.
    pub fn map_chunks_mut_results<T: Element>(
        &self,
        array: &SharedArray<T>,
        chunk_len: usize,
        f: fn(usize, &mut [T]),
    ) -> Result<Vec<Result<(), TaskError>>, PoolError> {
        self.map_chunks_mut_results_with(array, chunk_len, f, ItemOptions::new())
    }

    /// [`map_chunks_mut_results`](Self::map_chunks_mut_results) with this call's timeout.
    pub fn map_chunks_mut_results_with<T: Element>(
        &self,
        array: &SharedArray<T>,
        chunk_len: usize,
        f: fn(usize, &mut [T]),
        opts: ItemOptions,
    ) -> Result<Vec<Result<(), TaskError>>, PoolError> {
        self.chunk_items(array, chunk_len, ChunkCall::write(f), opts).map(decode_slots)
    }

    /// Run `call` over every chunk of `array`, each chunk with its own result.
    fn chunk_items<T: Element>(
        &self,
        array: &SharedArray<T>,
        chunk_len: usize,
        call: ChunkCall,
        opts: ItemOptions,
    ) -> Result<Vec<Slot>, PoolError> {
        let (chunks, step, records) = self.chunk_records(array, chunk_len, call)?;
        let timeout_ms = opts.timeout_ms(&self.core);
        let board = Board::new(call.res_size);
        let feed = Feed { board, tramp: call.tramp, func: call.func, step, per: 1, timeout_ms };
        self.run_items(&feed, &records, chunks)
    }

    /// Run `n` inputs (`args`: `feed.step` bytes each) until every one has a result.
    fn run_items(&self, feed: &Feed, args: &[u8], n: usize) -> Result<Vec<Slot>, PoolError> {
        if let Some(e) = self.core.lock().refuse() {
            return Err(e);
        }
        let step = feed.step;
        let slice = |first: usize, count: usize| &args[first * step..(first + count) * step];
        let mut next = 0;
        let board = &feed.board;
        let got = self.core.drive(Deadline::never(), |core, d| {
            feed.feed(core, d, &slice, &mut next, n)?;
            Ok((board.filled() == n).then_some(()))
        });
        if let Err(e) = got {
            if board.in_flight() > 0 {
                self.core.settle(&|sink: &Sink| matches!(sink, Sink::Items { board: b, .. } if Arc::ptr_eq(b, board)));
            }
            board.fail_rest(n, &e);
        }
        Ok(board.take_all())
    }
}
