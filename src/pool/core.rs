//! The pool's side of the mailboxes: submit entries, harvest results, wait, shut down.
//!
//! Everything here runs in the pool's own process, under one `Mutex<Dispatch>`. There is no
//! dispatcher thread: the calling threads submit and harvest themselves ("the caller's wait
//! loop"), spinning briefly and then parking on the shared `completions` futex. A helper
//! thread runs only while `apply_async` callbacks are outstanding.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::PoolError;
use super::layout::{
    Entry, KILL, MGR_BROKEN, MGR_READY, MGR_STARTING, OUT_DIED, OUT_ERROR, OUT_NONE, OUT_OK, OUT_PANIC, REASON_CAP,
    STOP, Shape, View, read_text,
};
use super::manager::manager_main;
use crate::process::{Child, Method, os, spawn};
use crate::segment::Segment;
use crate::sys::{Deadline, futex};

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
    Batch { batch: Arc<Batch>, first: usize, count: usize },
}

/// Why the pool stopped taking work.
#[derive(Clone, Debug)]
enum Dead {
    Terminated,
    Broken(String),
    Init(String),
}

impl Dead {
    fn error(&self) -> PoolError {
        match self {
            Dead::Terminated => PoolError::Terminated,
            Dead::Broken(r) => PoolError::Broken { reason: r.clone() },
            Dead::Init(r) => PoolError::InitializerFailed { reason: r.clone() },
        }
    }
}

struct Side {
    head: u32,
    harvested: u32,
    sinks: VecDeque<Sink>,
}

/// Pool-side bookkeeping, under one lock.
pub(crate) struct Dispatch {
    sides: Vec<Side>,
    pub closed: bool,
    dead: Option<Dead>,
    next: usize,
}

impl Dispatch {
    /// The error new work gets, if the pool takes none.
    pub fn refuse(&self) -> Option<PoolError> {
        match &self.dead {
            Some(d) => Some(d.error()),
            None if self.closed => Some(PoolError::Closed),
            None => None,
        }
    }

    pub fn outstanding(&self) -> usize {
        self.sides.iter().map(|s| s.sinks.len()).sum()
    }
}

/// The pool-side engine behind `Pool`.
pub(crate) struct Core {
    seg: Segment,
    shape: Shape,
    manager: Mutex<Child>,
    bell: OwnedFd,
    disp: Mutex<Dispatch>,
    callbacks: AtomicUsize,
    helper: Mutex<bool>,
}

/// What a submission writes into an entry.
pub(crate) struct Job<'a> {
    pub tramp: u64,
    pub func: u64,
    pub count: u32,
    pub args: &'a [&'a [u8]],
}

impl Core {
    /// Create the segment, start the manager (which starts the workers), wait until ready.
    pub fn start(
        method: Method,
        shape: Shape,
        init: impl FnOnce(*mut super::layout::Header),
    ) -> Result<Core, PoolError> {
        let seg = Segment::anonymous(shape.total())?;
        let view = View::with_shape(&seg, shape);
        let p = view.header_ptr();
        // SAFETY: the segment is fresh and no other process maps it yet; `p` points to the
        // header inside it; plain stores to the config fields before the manager is forked.
        unsafe {
            (*p).pool_pid = os::getpid() as u64;
            (*p).workers = shape.workers as u64;
            (*p).depth = shape.depth as u64;
            (*p).msg = shape.msg as u64;
            (*p).direct_fork = u64::from(method == Method::Fork);
        }
        init(p);
        let bell = os::eventfd().map_err(|e| PoolError::Os { op: "eventfd", source: e })?;
        let manager = spawn(method, &seg, manager_main, 0, &[bell.as_raw_fd()], false)?;
        let sides = (0..shape.workers).map(|_| Side { head: 0, harvested: 0, sinks: VecDeque::new() }).collect();
        let core = Core {
            seg,
            shape,
            manager: Mutex::new(manager),
            bell,
            disp: Mutex::new(Dispatch { sides, closed: false, dead: None, next: 0 }),
            callbacks: AtomicUsize::new(0),
            helper: Mutex::new(false),
        };
        core.wait_ready()?;
        Ok(core)
    }

    fn view(&self) -> View<'_> {
        View::with_shape(&self.seg, self.shape)
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    fn wait_ready(&self) -> Result<(), PoolError> {
        let hdr = self.view().header();
        let deadline = Deadline::after(Duration::from_secs(10));
        loop {
            let c = hdr.completions.load(Ordering::SeqCst);
            match hdr.manager.load(Ordering::SeqCst) {
                MGR_READY => return Ok(()),
                MGR_STARTING => {}
                _ => return Err(self.broken_error()),
            }
            if deadline.passed() {
                self.terminate();
                return Err(PoolError::Broken { reason: "the workers did not start within 10 s".into() });
            }
            if let Some(status) = self.manager_status() {
                return Err(PoolError::Broken { reason: format!("the manager process ended at start ({status})") });
            }
            futex::wait(&hdr.completions, c, deadline, Some(Duration::from_millis(20)));
        }
    }

    fn broken_error(&self) -> PoolError {
        let view = self.view();
        let hdr = view.header();
        let reason = read_text(view.reason_area(), REASON_CAP, &hdr.reason_len);
        if reason.contains("initializer") {
            PoolError::InitializerFailed { reason }
        } else {
            PoolError::Broken { reason }
        }
    }

    fn manager_status(&self) -> Option<crate::process::ExitStatus> {
        let mut m = self.manager.lock().unwrap_or_else(PoisonError::into_inner);
        m.try_wait(self.view().exit_record()).ok().flatten()
    }

    pub fn lock(&self) -> MutexGuard<'_, Dispatch> {
        self.disp.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Current worker pids, by mailbox.
    pub fn worker_pids(&self) -> Vec<u32> {
        (0..self.shape.workers).map(|w| self.view().mailbox(w).pid.load(Ordering::SeqCst)).collect()
    }

    /// The manager's pid.
    pub fn manager_pid(&self) -> u32 {
        self.manager.lock().unwrap_or_else(PoisonError::into_inner).pid()
    }

    /// Submit one entry to the least-loaded worker with room. `false`: every ring is full.
    pub fn try_submit(&self, d: &mut Dispatch, job: &Job<'_>, sink: Sink) -> Result<bool, PoolError> {
        if let Some(e) = d.refuse() {
            return Err(e);
        }
        let depth = self.shape.depth as u32;
        let n = d.sides.len();
        let mut best: Option<(usize, u32)> = None;
        for k in 0..n {
            let w = (d.next + k) % n;
            let load = d.sides[w].head.wrapping_sub(d.sides[w].harvested);
            if load < depth && best.is_none_or(|(_, l)| load < l) {
                best = Some((w, load));
            }
        }
        let Some((w, _)) = best else { return Ok(false) };
        // Ties go to the worker used last: it is likely still spinning, not parked.
        d.next = w;
        let view = self.view();
        let side = &mut d.sides[w];
        let entry = view.entry(w, side.head);
        write_job(&entry, job);
        side.head = side.head.wrapping_add(1);
        side.sinks.push_back(sink);
        let mb = view.mailbox(w);
        mb.head.store(side.head, Ordering::SeqCst);
        if mb.sleeping.load(Ordering::SeqCst) != 0 {
            mb.doorbell.fetch_add(1, Ordering::SeqCst);
            futex::wake(&mb.doorbell, 1);
        }
        Ok(true)
    }

    /// Move finished entries to their sinks; returns callbacks to run outside the lock.
    fn harvest(&self, d: &mut Dispatch, fired: &mut Vec<(Arc<Cell>, Callback)>) {
        let view = self.view();
        for (w, side) in d.sides.iter_mut().enumerate() {
            let tail = view.mailbox(w).tail.load(Ordering::Acquire);
            while side.harvested != tail {
                let Some(sink) = side.sinks.pop_front() else { break };
                let entry = view.entry(w, side.harvested);
                deliver(&entry, sink, fired);
                side.harvested = side.harvested.wrapping_add(1);
            }
        }
    }

    /// Fail everything in flight and refuse new work.
    fn kill_outstanding(&self, d: &mut Dispatch, why: Dead) {
        let mut fired = Vec::new();
        self.harvest(d, &mut fired);
        for side in &mut d.sides {
            for sink in side.sinks.drain(..) {
                fail(sink, why.error(), &mut fired);
            }
            side.harvested = side.head;
        }
        if d.dead.is_none() {
            d.dead = Some(why);
        }
        drop_fired_elsewhere(fired);
    }

    fn snapshot(&self, d: &Dispatch) -> Vec<u32> {
        d.sides.iter().map(|s| s.harvested).collect()
    }

    fn progressed(&self, snap: &[u32]) -> bool {
        let view = self.view();
        snap.iter().enumerate().any(|(w, &h)| view.mailbox(w).tail.load(Ordering::Acquire) != h)
            || view.header().manager.load(Ordering::Acquire) != MGR_READY
    }

    /// Harvest and run `step` until it yields, waiting for completions in between.
    pub fn drive<T>(
        &self,
        deadline: Deadline,
        mut step: impl FnMut(&Core, &mut Dispatch) -> Result<Option<T>, PoolError>,
    ) -> Result<T, PoolError> {
        let start = Instant::now();
        let hdr = self.view().header();
        let mut fired = Vec::new();
        loop {
            let mut d = self.lock();
            self.harvest(&mut d, &mut fired);
            if d.dead.is_none() && hdr.manager.load(Ordering::Acquire) == MGR_BROKEN {
                let e = self.broken_error();
                let why = if let PoolError::InitializerFailed { reason } = e {
                    Dead::Init(reason)
                } else {
                    Dead::Broken(e.to_string())
                };
                self.kill_outstanding(&mut d, why);
            }
            let out = step(self, &mut d);
            let snap = self.snapshot(&d);
            drop(d);
            self.run_callbacks(&mut fired);
            match out {
                Ok(Some(t)) => return Ok(t),
                Err(e) => return Err(e),
                Ok(None) => {}
            }
            if deadline.passed() {
                return Err(PoolError::Timeout { waited: start.elapsed() });
            }
            if !self.park(&snap, deadline) {
                self.check_manager();
            }
        }
    }

    /// Wait for progress: spin briefly, then park on `completions`. `false`: nothing
    /// happened for a while (time to check the manager).
    fn park(&self, snap: &[u32], deadline: Deadline) -> bool {
        let spin_until = Instant::now() + Duration::from_micros(30);
        while Instant::now() < spin_until {
            for _ in 0..32 {
                std::hint::spin_loop();
            }
            if self.progressed(snap) {
                return true;
            }
        }
        let hdr = self.view().header();
        hdr.sleepers.fetch_add(1, Ordering::SeqCst);
        let c = hdr.completions.load(Ordering::SeqCst);
        let woke = if self.progressed(snap) {
            true
        } else {
            futex::wait(&hdr.completions, c, deadline, Some(Duration::from_millis(100))) == futex::Wait::Woken
        };
        hdr.sleepers.fetch_sub(1, Ordering::SeqCst);
        woke
    }

    /// If the manager has ended, the pool is broken: fail everything.
    fn check_manager(&self) {
        if let Some(status) = self.manager_status() {
            let mut d = self.lock();
            if d.dead.is_none() {
                let why = Dead::Broken(format!("the pool's manager process ended ({status})"));
                self.kill_outstanding(&mut d, why);
            }
        }
    }

    fn run_callbacks(&self, fired: &mut Vec<(Arc<Cell>, Callback)>) {
        for (cell, cb) in fired.drain(..) {
            {
                let st = cell.state.lock().unwrap_or_else(PoisonError::into_inner);
                let r = st.result.as_ref().map(|r| r.as_ref().map(Vec::as_slice));
                if let Some(r) = r {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(r)));
                }
            }
            cell.done.store(true, Ordering::Release);
            self.callbacks.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Make sure a helper thread harvests while callbacks are outstanding.
    pub fn callback_added(self: &Arc<Self>) {
        self.callbacks.fetch_add(1, Ordering::AcqRel);
        let mut running = self.helper.lock().unwrap_or_else(PoisonError::into_inner);
        if *running {
            return;
        }
        *running = true;
        let core = Arc::clone(self);
        let spawned = std::thread::Builder::new().name("shmkit-pool-callbacks".into()).spawn(move || {
            loop {
                let _ = core.drive(Deadline::never(), |c, d| {
                    Ok((c.callbacks.load(Ordering::Acquire) == 0 || d.dead.is_some()).then_some(()))
                });
                let mut running = core.helper.lock().unwrap_or_else(PoisonError::into_inner);
                if core.callbacks.load(Ordering::Acquire) == 0 || core.lock().dead.is_some() {
                    *running = false;
                    return;
                }
            }
        });
        if spawned.is_err() {
            *running = false;
        }
    }

    /// Stop at once: workers are killed, outstanding tasks fail with `Terminated`.
    pub fn terminate(&self) {
        let view = self.view();
        view.header().state.store(KILL, Ordering::SeqCst);
        os::eventfd_ring(self.bell.as_raw_fd());
        self.reap_manager(Duration::from_secs(3));
        let mut d = self.lock();
        self.kill_outstanding(&mut d, Dead::Terminated);
    }

    /// Let workers finish what they have and exit; then reap the manager.
    pub fn stop_gracefully(&self, timeout: Duration) {
        let view = self.view();
        view.header().state.store(STOP, Ordering::SeqCst);
        os::eventfd_ring(self.bell.as_raw_fd());
        for w in 0..self.shape.workers {
            let mb = view.mailbox(w);
            mb.doorbell.fetch_add(1, Ordering::SeqCst);
            futex::wake_all(&mb.doorbell);
        }
        self.reap_manager(timeout);
        let mut d = self.lock();
        self.kill_outstanding(&mut d, Dead::Terminated);
    }

    fn reap_manager(&self, timeout: Duration) {
        let record = self.view().exit_record();
        let mut m = self.manager.lock().unwrap_or_else(PoisonError::into_inner);
        if !matches!(m.wait(record, Deadline::after(timeout)), Ok(Some(_))) {
            // Its workers die with it (PR_SET_PDEATHSIG).
            m.kill_and_reap(record);
        }
    }

    pub fn is_dead(&self) -> bool {
        self.lock().dead.is_some()
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        let needs = self.manager.get_mut().map(|m| m.status().is_none()).unwrap_or(true);
        if needs {
            self.terminate();
        }
    }
}

fn write_job(entry: &Entry<'_>, job: &Job<'_>) {
    let mut at = 0usize;
    for part in job.args {
        // SAFETY: the pool owns this entry (its previous use was harvested, the worker has
        // not been told about it yet); callers checked the parts fit in `msg` bytes.
        unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), entry.arg_ptr().add(at), part.len()) };
        at += part.len();
    }
    let h = entry.head;
    h.tramp.store(job.tramp, Ordering::Relaxed);
    h.func.store(job.func, Ordering::Relaxed);
    h.count.store(job.count, Ordering::Relaxed);
    h.arg_len.store(at as u32, Ordering::Relaxed);
    h.outcome.store(OUT_NONE, Ordering::Relaxed);
    h.res_len.store(0, Ordering::Relaxed);
}

fn outcome<'a>(entry: &Entry<'a>) -> Result<&'a [u8], PoolError> {
    let h = entry.head;
    let len = (h.res_len.load(Ordering::Relaxed) as usize).min(entry.msg());
    // SAFETY: the worker published this entry (tail, Acquire) and no longer touches it; the
    // result area is `msg` bytes inside the mapping.
    let bytes = unsafe { std::slice::from_raw_parts(entry.res_ptr(), len) };
    let pid = h.died_pid.load(Ordering::Relaxed);
    let text = || String::from_utf8_lossy(bytes).into_owned();
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
        other => Err(PoolError::TaskFailed { message: format!("corrupt task outcome {other}") }),
    }
}

fn deliver(entry: &Entry<'_>, sink: Sink, fired: &mut Vec<(Arc<Cell>, Callback)>) {
    let res = outcome(entry);
    match sink {
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

fn fail(sink: Sink, e: PoolError, fired: &mut Vec<(Arc<Cell>, Callback)>) {
    match sink {
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

fn set_cell(cell: Arc<Cell>, r: Result<Vec<u8>, PoolError>, fired: &mut Vec<(Arc<Cell>, Callback)>) {
    let mut st = cell.state.lock().unwrap_or_else(PoisonError::into_inner);
    st.result = Some(r);
    let cb = st.callback.take();
    drop(st);
    match cb {
        Some(cb) => fired.push((cell, cb)),
        None => cell.done.store(true, Ordering::Release),
    }
}

/// Callbacks fired while failing everything run on a short-lived thread, so that no lock is
/// held while user code runs.
fn drop_fired_elsewhere(fired: Vec<(Arc<Cell>, Callback)>) {
    if fired.is_empty() {
        return;
    }
    let run = move || {
        for (cell, cb) in fired {
            {
                let st = cell.state.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(r) = st.result.as_ref() {
                    let _ =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(r.as_ref().map(Vec::as_slice))));
                }
            }
            cell.done.store(true, Ordering::Release);
        }
    };
    if let Err(e) = std::thread::Builder::new().name("shmkit-pool-callbacks".into()).spawn(run) {
        drop(e);
    }
}
