//! `Pool`, its builder, and `AsyncResult`.

use std::sync::Arc;
use std::time::Duration;

use bytemuck::Pod;

use super::PoolError;
use super::config::{Config, MAX_DEPTH, MAX_MSG, MAX_START_TIMEOUT, MAX_STDERR_TAIL, MAX_WORKERS, MIN_MSG, new_key};
use super::dispatch::{Core, Job};
use super::handle::AsyncResult;
use super::layout::{INIT_ARG_CAP, Shape};
use super::sink::{Batch, Callback, Cell, Sink};
use super::task::{InitTramp, Tramp, init0_tramp, init1_tramp, map_tramp, star2_tramp, tramp_addr};
use crate::process::{Method, StartMethod, start_setters};
use crate::sys::Deadline;
use crate::sys::process as os;

/// Options for a [`Pool`], like the arguments of Python's `multiprocessing.Pool`.
///
/// ```
/// use shmkit::pool::Pool;
/// fn setup() { /* runs once in every worker */ }
/// let pool = Pool::builder().processes(2).initializer(setup).max_tasks_per_child(1000).build()?;
/// assert_eq!(pool.map(|x: u32| x + 1, [1, 2, 3])?, [2, 3, 4]);
/// # Ok::<(), shmkit::pool::PoolError>(())
/// ```
#[derive(Clone, Debug)]
pub struct PoolBuilder {
    processes: Option<usize>,
    method: StartMethod,
    init: Option<(u64, u64, Vec<u8>)>,
    max_tasks: u64,
    msg: usize,
    depth: usize,
    start_timeout: Duration,
    forced_fork: bool,
    task_timeout: Option<Duration>,
    stderr_tail: usize,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            processes: None,
            method: StartMethod::Auto,
            init: None,
            max_tasks: 0,
            msg: 1024,
            depth: 64,
            start_timeout: Duration::from_secs(20),
            forced_fork: false,
            task_timeout: None,
            stderr_tail: 0,
        }
    }
}

impl PoolBuilder {
    /// Defaults: one worker per available core, [`StartMethod::Auto`], no initializer,
    /// workers never recycled, 1 KiB task messages, 64 queued entries per worker, 20 s for
    /// each worker to start.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of worker processes (default: `std::thread::available_parallelism`), 1 to 4096.
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n.clamp(1, MAX_WORKERS));
        self
    }

    start_setters! {
        /// How the pool starts its manager process (which forks the workers); see [`StartMethod`].
        /// [`StartMethod::Fork`] from a process with several threads is refused
        /// ([`ProcessError::ThreadsExist`](crate::process::ProcessError::ThreadsExist)); see
        /// [`force_fork`](Self::force_fork).
        fn start_method;

        /// Fork the pool's manager directly from this process even if it has other threads.
        ///
        /// The manager and every worker are then copies of this process as it was at that
        /// instant, including every lock another thread held: stdout and stderr (a thread that
        /// prints), the panic hook, your own mutexes, a non-glibc allocator. A worker that takes
        /// such a lock waits for ever. A worker stuck before it reports ready (in the initializer)
        /// is caught by [`start_timeout`](Self::start_timeout) and the pool fails with
        /// [`PoolError::StartTimeout`]; a *task* that blocks so hangs its call. The fork server
        /// ([`StartMethod::Auto`]) has none of this.
        ///
        /// # Safety
        ///
        /// At the moment of [`build`](Self::build), no other thread of this process may hold a
        /// lock that the manager, the initializer or any task will take, and the child must not
        /// depend on any state another thread was changing (POSIX allows only async-signal-safe
        /// functions after `fork` in a multi-threaded process; this pool's own code keeps to
        /// that, yours must be safe to run in such a copy).
        unsafe fn force_fork;
    }

    /// How long each worker (and each replacement) may take to start and run the
    /// initializer before it is killed and the pool fails with [`PoolError::StartTimeout`]
    /// (default 20 s; 1 ms to 24 h).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout.clamp(Duration::from_millis(1), MAX_START_TIMEOUT);
        self
    }

    /// Give every task item at most `timeout` (rounded up to whole milliseconds, at most
    /// about 49 days): a worker still on an item after that is SIGKILLed and replaced, and
    /// the item fails with [`PoolError::TaskTimedOut`] (its pid, how long it ran) — in
    /// `map_results` and the other `*_results` forms that item alone. Items of one chunk
    /// are timed one by one. Per call: [`ItemOptions::timeout`](super::ItemOptions::timeout).
    /// Default: no timeout.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Send each worker's stderr to the pool's manager, which keeps its last `bytes` bytes
    /// (at most 64 KiB) and attaches them to the item a crash or a timeout fails
    /// ([`TaskError::last_words`](super::TaskError::last_words)); panics are printed there
    /// too. What workers print then no longer reaches this process's stderr. Default: off.
    pub fn capture_stderr(mut self, bytes: usize) -> Self {
        self.stderr_tail = bytes.min(MAX_STDERR_TAIL);
        self
    }

    /// Run `f()` once in every worker before it takes tasks (and in every replacement).
    /// If it panics the pool is broken and calls return [`PoolError::InitializerFailed`].
    pub fn initializer(mut self, f: fn()) -> Self {
        self.init = Some((tramp_addr!(InitTramp, init0_tramp), f as usize as u64, Vec::new()));
        self
    }

    /// Like [`initializer`](Self::initializer), with an argument (at most 256 bytes).
    pub fn initializer_with<A: Pod>(mut self, f: fn(A), arg: A) -> Self {
        let tramp = tramp_addr!(InitTramp, init1_tramp::<A>);
        self.init = Some((tramp, f as usize as u64, bytemuck::bytes_of(&arg).to_vec()));
        self
    }

    /// Replace a worker by a fresh process after it ran `n` tasks (0: never, the default).
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.max_tasks = n;
        self
    }

    /// Bytes available for one task's arguments, and again for its results (default 1024).
    /// Chunks of `map` are cut to fit.
    pub fn message_size(mut self, bytes: usize) -> Self {
        self.msg = bytes.clamp(MIN_MSG, MAX_MSG);
        self
    }

    /// Entries queued per worker (default 64).
    pub fn queue_depth(mut self, n: usize) -> Self {
        self.depth = n.clamp(1, MAX_DEPTH);
        self
    }

    /// Start the pool: one manager process, which forks the workers. Returns once every
    /// worker has run the initializer and waits for tasks.
    pub fn build(self) -> Result<Pool, PoolError> {
        let workers = self.processes.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let method = if self.forced_fork { Method::Fork } else { self.method.resolve()? };
        let shape = Shape { workers: workers.clamp(1, MAX_WORKERS), depth: self.depth, msg: self.msg };
        let (init_tramp, init_fn, arg) = match &self.init {
            Some((tramp, f, arg)) => (*tramp, *f, arg.as_slice()),
            None => (0, 0, &[][..]),
        };
        if arg.len() > INIT_ARG_CAP {
            return Err(PoolError::MessageTooLarge {
                what: "initializer argument",
                size: arg.len(),
                limit: INIT_ARG_CAP,
            });
        }
        let config = Config {
            shape,
            pool_pid: os::getpid(),
            max_tasks: self.max_tasks,
            init_tramp,
            init_fn,
            init_arg_len: arg.len(),
            direct_fork: method == Method::Fork,
            start_timeout: self.start_timeout,
            stderr_tail: self.stderr_tail,
            key: new_key()?,
        };
        let mut core = Core::start(method, config, arg)?;
        core.set_task_timeout(self.task_timeout);
        Ok(Pool { core: Arc::new(core) })
    }
}

/// A pool of worker processes, like Python's `multiprocessing.Pool`, that does not hang
/// when a worker dies.
///
/// Tasks are plain `fn` items or non-capturing closures; arguments and results are
/// `bytemuck::Pod` values that cross through a shared-memory mailbox per worker (no pipes,
/// no pickling). Large data goes through a [`SharedArray`](crate::SharedArray) with
/// [`map_chunks`](Self::map_chunks), zero copy.
///
/// - A panicking task returns [`PoolError::TaskPanicked`] with its message; the worker lives on.
/// - A worker killed mid-task fails that task with [`PoolError::WorkerDied`] naming its pid
///   and signal, at once; a replacement worker is forked and later calls succeed.
/// - Dropping the pool terminates it (like Python's `with Pool() as p:`): workers and their
///   manager are killed and reaped, nothing is orphaned. [`close`](Self::close) +
///   [`join`](Self::join) let queued work finish first.
///
/// ```
/// use shmkit::pool::{Pool, PoolError};
/// let pool = Pool::new(2)?;
/// assert_eq!(pool.map(|x: u64| x * x, 0..5)?, [0, 1, 4, 9, 16]);
/// assert_eq!(pool.starmap(|a: u32, b: u32| a * b, [(2, 3), (4, 5)])?, [6, 20]);
/// let handle = pool.apply_async(|x: f64| x.sqrt(), 2.0)?;
/// assert!((handle.get()? - 1.4142).abs() < 1e-3);
/// match pool.apply(|_: ()| -> u8 { panic!("boom") }, ()) {
///     Err(PoolError::TaskPanicked { message, .. }) => assert!(message.contains("boom")),
///     other => panic!("{other:?}"),
/// }
/// assert_eq!(pool.apply(|x: i32| x - 1, 1)?, 0); // still working
/// # Ok::<(), PoolError>(())
/// ```
#[must_use = "dropping the pool terminates it: its workers are killed and outstanding tasks fail"]
pub struct Pool {
    pub(crate) core: Arc<Core>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("processes", &self.processes()).field("workers", &self.worker_pids()).finish()
    }
}

pub(crate) fn per_entry<A, R>(chunksize: usize, msg: usize) -> Result<usize, PoolError> {
    let (sa, sr) = (std::mem::size_of::<A>(), std::mem::size_of::<R>());
    if sa > msg {
        return Err(PoolError::MessageTooLarge { what: "an argument", size: sa, limit: msg });
    }
    if sr > msg {
        return Err(PoolError::MessageTooLarge { what: "a result", size: sr, limit: msg });
    }
    Ok(chunksize.max(1).min(msg / sa.max(1)).min(msg / sr.max(1)).min(1 << 20))
}

/// How far a running `map` has got: items completed and in all
/// ([`Pool::map_with_progress`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Items whose results are in.
    pub completed: usize,
    /// Items in the `map`.
    pub total: usize,
}

/// A batch's geometry: `n` items of `step` bytes, `per` per task, `res_size` result bytes each.
#[derive(Clone, Copy)]
struct BatchShape {
    n: usize,
    step: usize,
    per: usize,
    res_size: usize,
}

/// `n` values of `R` from packed bytes.
pub(crate) fn decode_vec<R: Pod>(bytes: &[u8], n: usize) -> Vec<R> {
    let size = std::mem::size_of::<R>();
    if size == 0 {
        return vec![R::zeroed(); n];
    }
    bytes.chunks_exact(size).map(bytemuck::pod_read_unaligned).collect()
}

impl Pool {
    /// A pool of `processes` workers with default options.
    pub fn new(processes: usize) -> Result<Pool, PoolError> {
        PoolBuilder::new().processes(processes).build()
    }

    /// Options; see [`PoolBuilder`].
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    /// Number of workers.
    pub fn processes(&self) -> usize {
        self.core.shape().workers
    }

    /// The pids of the current workers (a replaced worker's successor appears here).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.core.worker_pids()
    }

    /// The pid of the manager process that forks and watches the workers.
    pub fn manager_pid(&self) -> u32 {
        self.core.manager_pid()
    }

    /// Run `f(arg)` in a worker and wait for the result.
    pub fn apply<A: Pod, R: Pod>(&self, f: fn(A) -> R, arg: A) -> Result<R, PoolError> {
        self.apply_async(f, arg)?.get()
    }

    /// Start `f(arg)` in a worker; the handle gives the result.
    pub fn apply_async<A: Pod, R: Pod>(&self, f: fn(A) -> R, arg: A) -> Result<AsyncResult<R>, PoolError> {
        self.submit_one(f, arg, None)
    }

    /// Like [`apply_async`](Self::apply_async), with callbacks run in this process (on a
    /// helper thread, or on a thread waiting on the pool) when the task ends: `on_ok` with the
    /// result, or `on_err` with the error. They run before the handle becomes ready.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// let pool = shmkit::pool::Pool::new(1)?;
    /// let (tx, rx) = mpsc::channel();
    /// let tx2 = tx.clone();
    /// pool.apply_async_with(|x: u8| x * 2, 21, move |r| tx.send(Ok(r)).unwrap(), move |e| tx2.send(Err(e.to_string())).unwrap())?;
    /// assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap(), Ok(42));
    /// # Ok::<(), shmkit::pool::PoolError>(())
    /// ```
    pub fn apply_async_with<A: Pod, R: Pod>(
        &self,
        f: fn(A) -> R,
        arg: A,
        on_ok: impl FnOnce(R) + Send + 'static,
        on_err: impl FnOnce(&PoolError) + Send + 'static,
    ) -> Result<AsyncResult<R>, PoolError> {
        let cb: Callback = Box::new(move |r: Result<&[u8], &PoolError>| match r {
            Ok(bytes) if bytes.len() == std::mem::size_of::<R>() => on_ok(bytemuck::pod_read_unaligned(bytes)),
            Ok(_) => on_err(&PoolError::TaskFailed { message: "a worker returned a result of the wrong size".into() }),
            Err(e) => on_err(e),
        });
        let handle = self.submit_one(f, arg, Some(cb))?;
        self.core.callback_added();
        Ok(handle)
    }

    fn submit_one<A: Pod, R: Pod>(
        &self,
        f: fn(A) -> R,
        arg: A,
        cb: Option<Callback>,
    ) -> Result<AsyncResult<R>, PoolError> {
        per_entry::<A, R>(1, self.core.shape().msg)?;
        let cell = Arc::new(Cell::with_callback(cb));
        let bytes = [bytemuck::bytes_of(&arg)];
        let job = Job { tramp: tramp_addr!(Tramp, map_tramp::<A, R>), func: f as usize as u64, count: 1, args: &bytes };
        self.core.submit_cell(&job, &cell)?;
        Ok(AsyncResult::new(Arc::clone(&self.core), cell))
    }

    /// `f` over every item, results in order. Chunks as Python does (about four chunks per
    /// worker); see [`map_chunksize`](Self::map_chunksize).
    ///
    /// On the first failed chunk (a panic, a dead worker) the call cancels its chunks that
    /// have not started and returns that error once none of its chunks can still run (it
    /// waits for the ones running then), so a retry never races with the failed call. The
    /// same holds for every batch call: `map*`, `starmap`, `map_chunks*`, and `imap*` when
    /// its iterator is dropped.
    pub fn map<A: Pod, R: Pod>(&self, f: fn(A) -> R, items: impl IntoIterator<Item = A>) -> Result<Vec<R>, PoolError> {
        let items: Vec<A> = items.into_iter().collect();
        let per = items.len().div_ceil(self.processes() * 4).max(1);
        self.map_slice(f, &items, per)
    }

    /// `f` over every item, `chunksize` items per task message, at most as many as fit one
    /// message: `message_size / size_of::<A>()` (and as many results), so with the default
    /// 1 KiB messages a `chunksize` of 500 `u64`s becomes 128 per message. Every item still
    /// runs; raise [`PoolBuilder::message_size`] for larger chunks. The same holds for
    /// [`imap`](Self::imap) and [`imap_unordered`](Self::imap_unordered); the serde family
    /// cuts chunks by bytes (`map_serde`, feature `serde`).
    pub fn map_chunksize<A: Pod, R: Pod>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>, PoolError> {
        let items: Vec<A> = items.into_iter().collect();
        self.map_slice(f, &items, chunksize)
    }

    /// [`map`](Self::map) that reports progress: `observer` is called on the calling thread
    /// with the items completed so far and the total, whenever that count changes, and once
    /// more at the end. For a progress bar, a log line, or an ETA.
    ///
    /// ```
    /// use shmkit::pool::{Pool, Progress};
    /// let pool = Pool::new(2)?;
    /// let mut last = Progress { completed: 0, total: 0 };
    /// let out = pool.map_with_progress(|x: u64| x * x, 0..1000, |p| last = p)?;
    /// assert_eq!(out[999], 999 * 999);
    /// assert_eq!(last, Progress { completed: 1000, total: 1000 });
    /// # Ok::<(), shmkit::pool::PoolError>(())
    /// ```
    pub fn map_with_progress<A: Pod, R: Pod>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        mut observer: impl FnMut(Progress),
    ) -> Result<Vec<R>, PoolError> {
        let items: Vec<A> = items.into_iter().collect();
        let per = items.len().div_ceil(self.processes() * 4).max(1);
        self.map_observed(f, &items, per, &mut observer)
    }

    fn map_slice<A: Pod, R: Pod>(&self, f: fn(A) -> R, items: &[A], chunksize: usize) -> Result<Vec<R>, PoolError> {
        self.map_observed(f, items, chunksize, &mut |_| {})
    }

    fn map_observed<A: Pod, R: Pod>(
        &self,
        f: fn(A) -> R,
        items: &[A],
        chunksize: usize,
        observer: &mut dyn FnMut(Progress),
    ) -> Result<Vec<R>, PoolError> {
        let bytes: &[u8] = bytemuck::cast_slice(items);
        let per = per_entry::<A, R>(chunksize, self.core.shape().msg)?;
        let (tramp, func) = (tramp_addr!(Tramp, map_tramp::<A, R>), f as usize as u64);
        let shape =
            BatchShape { n: items.len(), step: std::mem::size_of::<A>(), per, res_size: std::mem::size_of::<R>() };
        let out = self.run_batch_observed(shape, bytes, tramp, func, observer)?;
        Ok(decode_vec(&out, items.len()))
    }

    /// `f(a, b)` over every pair, results in order (Python's `starmap`).
    pub fn starmap<A: Pod, B: Pod, R: Pod>(
        &self,
        f: fn(A, B) -> R,
        items: impl IntoIterator<Item = (A, B)>,
    ) -> Result<Vec<R>, PoolError> {
        let mut packed = Vec::new();
        let mut n = 0usize;
        for (a, b) in items {
            packed.extend_from_slice(bytemuck::bytes_of(&a));
            packed.extend_from_slice(bytemuck::bytes_of(&b));
            n += 1;
        }
        let step = std::mem::size_of::<A>() + std::mem::size_of::<B>();
        let msg = self.core.shape().msg;
        if step > msg {
            return Err(PoolError::MessageTooLarge { what: "an argument pair", size: step, limit: msg });
        }
        let per = per_entry::<(), R>(n.div_ceil(self.processes() * 4), msg)?.min(msg / step.max(1));
        let tramp = tramp_addr!(Tramp, star2_tramp::<A, B, R>);
        let out = self.run_batch(n, step, &packed, per, tramp, f as usize as u64, std::mem::size_of::<R>())?;
        Ok(decode_vec(&out, n))
    }

    /// Submit `n` items of `step` bytes each in entries of `per` items; wait for all.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_batch(
        &self,
        n: usize,
        step: usize,
        bytes: &[u8],
        per: usize,
        tramp: u64,
        func: u64,
        res_size: usize,
    ) -> Result<Vec<u8>, PoolError> {
        self.run_batch_observed(BatchShape { n, step, per, res_size }, bytes, tramp, func, &mut |_| {})
    }

    fn run_batch_observed(
        &self,
        shape: BatchShape,
        bytes: &[u8],
        tramp: u64,
        func: u64,
        observer: &mut dyn FnMut(Progress),
    ) -> Result<Vec<u8>, PoolError> {
        let BatchShape { n, step, per, res_size } = shape;
        if n == 0 {
            observer(Progress { completed: 0, total: 0 });
            return Ok(Vec::new());
        }
        let batch = Arc::new(Batch::new(n, res_size));
        let mut next = 0;
        let mut reported = usize::MAX;
        let result = self.core.drive(Deadline::never(), |core, d| {
            let completed = n - batch.remaining();
            if completed != reported {
                reported = completed;
                observer(Progress { completed, total: n });
            }
            if batch.failed() {
                // Stop feeding; `settle` below cancels what is queued.
                return Ok(Some(()));
            }
            while next < n {
                let count = per.min(n - next);
                let part = [&bytes[next * step..(next + count) * step]];
                let job = Job { tramp, func, count: count as u32, args: &part };
                let sink = Sink::Batch { batch: Arc::clone(&batch), first: next, count };
                if !core.try_submit(d, &job, sink)? {
                    break;
                }
                next += count;
            }
            Ok((next == n && batch.is_done()).then_some(()))
        });
        if result.is_err() || batch.failed() {
            // None of this call's entries may run after it returns.
            self.core.settle(&|sink: &Sink| sink.is_batch(&batch));
        }
        result?;
        let completed = n - batch.remaining();
        if completed != reported {
            observer(Progress { completed, total: n });
        }
        batch.finish()
    }

    /// Stop accepting tasks; queued ones still run. Then [`join`](Self::join).
    pub fn close(&self) {
        self.core.lock().closed = true;
    }

    /// After [`close`](Self::close): wait for queued tasks, then for the workers to exit.
    ///
    /// On a pool that was not closed (nor terminated) it returns
    /// [`PoolError::StillRunning`] at once, as Python raises `ValueError`.
    pub fn join(&self) -> Result<(), PoolError> {
        self.join_until(Deadline::never())
    }

    /// Like [`join`](Self::join), giving up with [`PoolError::Timeout`] after `timeout`.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), PoolError> {
        self.join_until(Deadline::after(timeout))
    }

    fn join_until(&self, deadline: Deadline) -> Result<(), PoolError> {
        if !self.core.lock().closed {
            return Err(PoolError::StillRunning);
        }
        if !self.core.is_dead() {
            let start = std::time::Instant::now();
            self.core.drive(deadline, |_, d| Ok((d.outstanding() == 0).then_some(())))?;
            // Idle workers exit at once; an untimed join gives stragglers 10 s, then kills.
            let stop_by = match deadline.remaining() {
                Some(_) => deadline,
                None => Deadline::after(Duration::from_secs(10)),
            };
            if !self.core.stop_gracefully(stop_by) {
                return Err(PoolError::Timeout { waited: start.elapsed() });
            }
        }
        Ok(())
    }

    /// Stop at once: kill the workers; outstanding tasks fail with [`PoolError::Terminated`].
    ///
    /// Every thread waiting on the pool meanwhile (a `map` on another thread, an
    /// [`AsyncResult`], the callbacks of [`apply_async_with`](Self::apply_async_with)) gets
    /// `Terminated`: the tasks are marked before the workers are killed.
    pub fn terminate(&self) {
        self.core.lock().closed = true;
        self.core.terminate();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.core.terminate();
    }
}
