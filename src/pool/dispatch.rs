//! The pool's side of the mailboxes: submit entries, harvest results, wait, shut down.
//!
//! Everything here runs in the pool's own process, under one `Mutex<Dispatch>`. There is no
//! dispatcher thread: the calling threads submit and harvest themselves ("the caller's wait
//! loop"), spinning briefly and then parking on the shared `completions` futex. A helper
//! thread runs only while `apply_async` callbacks are outstanding.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use super::PoolError;
use super::config::{Config, Corrupt, entry_mac};
use super::layout::{
    BROKEN_CORRUPT, BROKEN_INIT, BROKEN_START, Entry, KILL, MGR_BROKEN, MGR_READY, MGR_STARTING, OUT_NONE, REASON_CAP,
    RUN, STOP, Shape, View, read_text,
};
use super::sink::{Cell, Fired, Sink, deliver, drop_fired_elsewhere, fail, run_fired};
use super::supervisor::manager_main;
use crate::process::{Child, ExitStatus, Method, spawn};
use crate::segment::Segment;
use crate::sync::WaitPolicy;
use crate::sync::wait::{Cadence, key_of, spin_then};
use crate::sys::process as os;
use crate::sys::{Deadline, futex};

/// Why the pool stopped taking work.
#[derive(Clone, Debug)]
enum Dead {
    Terminated,
    /// Closed and joined: workers exited after their queued work.
    Joined,
    Broken(String),
    Init(String),
    Start {
        role: &'static str,
        pid: u32,
        waited: Duration,
    },
    Corrupt(Corrupt),
}

impl Dead {
    fn error(&self) -> PoolError {
        match self {
            Dead::Terminated => PoolError::Terminated,
            Dead::Joined => PoolError::Closed,
            Dead::Broken(r) => PoolError::Broken { reason: r.clone() },
            Dead::Init(r) => PoolError::InitializerFailed { reason: r.clone() },
            Dead::Start { role, pid, waited } => PoolError::StartTimeout { role, pid: *pid, waited: *waited },
            Dead::Corrupt(c) => (*c).into(),
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
    /// The MAC key for entries (private to this process, the manager and its workers).
    key: u64,
    /// Locked by whoever reaps the manager (terminate, join) for the whole time it takes;
    /// timed calls only `try_lock` it.
    manager: Mutex<Child>,
    manager_pid: u32,
    bell: OwnedFd,
    disp: Mutex<Dispatch>,
    callbacks: AtomicUsize,
    helper: Mutex<bool>,
    /// Each item's timeout in ms unless a call says otherwise (0: none).
    task_timeout_ms: u32,
}

/// What a submission writes into an entry.
pub(crate) struct Job<'a> {
    pub tramp: u64,
    pub func: u64,
    pub count: u32,
    pub args: &'a [&'a [u8]],
}

/// How long the pool waits for the manager's own start, beyond the workers' start timeout.
const MANAGER_GRACE: Duration = Duration::from_secs(5);

impl Core {
    /// Create the segment, start the manager (which starts the workers), wait until every
    /// worker reported ready.
    pub fn start(method: Method, config: Config, init_arg: &[u8]) -> Result<Core, PoolError> {
        let shape = config.shape;
        let seg = Segment::anonymous(shape.total())?;
        let view = View::with_shape(&seg, shape)
            .ok_or(PoolError::Broken { reason: "the pool's segment is smaller than asked for".into() })?;
        config.publish(view.header());
        let len = init_arg.len().min(super::layout::INIT_ARG_CAP);
        // SAFETY: the segment is fresh and no other process maps it yet; the area has
        // INIT_ARG_CAP bytes inside the header.
        unsafe { std::ptr::copy_nonoverlapping(init_arg.as_ptr(), view.init_arg_area(), len) };
        let bell = os::eventfd().map_err(|e| PoolError::Os { op: "eventfd", source: e })?;
        // The key travels as the manager's start argument: a register copied by fork, or a
        // message on the fork server's private socket; never shared memory.
        let manager = spawn(method, &seg, manager_main, config.key, &[bell.as_raw_fd()], false)?;
        let sides = (0..shape.workers).map(|_| Side { head: 0, harvested: 0, sinks: VecDeque::new() }).collect();
        let core = Core {
            seg,
            shape,
            key: config.key,
            manager_pid: manager.pid(),
            manager: Mutex::new(manager),
            bell,
            disp: Mutex::new(Dispatch { sides, closed: false, dead: None, next: 0 }),
            callbacks: AtomicUsize::new(0),
            helper: Mutex::new(false),
            task_timeout_ms: 0,
        };
        core.wait_ready(config.start_timeout + MANAGER_GRACE)?;
        Ok(core)
    }

    fn view(&self) -> View<'_> {
        // SAFETY: `start` built a view with this very shape over this very segment
        // (`with_shape` accepted it); neither changes afterwards.
        unsafe { View::assume(&self.seg, self.shape) }
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    fn wait_ready(&self, bound: Duration) -> Result<(), PoolError> {
        let hdr = self.view().header();
        let deadline = Deadline::after(bound);
        loop {
            let c = hdr.completions.load(Ordering::SeqCst);
            match hdr.manager.load(Ordering::SeqCst) {
                MGR_READY => return Ok(()),
                MGR_STARTING => {}
                MGR_BROKEN => return Err(self.broken().error()),
                other => return Err(Corrupt::new("header.manager", u64::from(other)).into()),
            }
            if deadline.passed() {
                self.terminate();
                return Err(PoolError::StartTimeout { role: "manager", pid: self.manager_pid, waited: bound });
            }
            if let Some(status) = self.manager_status() {
                return Err(PoolError::Broken { reason: format!("the manager process ended at start ({status})") });
            }
            futex::wait(&hdr.completions, c, deadline, Some(Duration::from_millis(20)));
        }
    }

    /// Why the manager gave up, from what it published.
    fn broken(&self) -> Dead {
        let view = self.view();
        let hdr = view.header();
        let reason = read_text(view.reason_area(), REASON_CAP, &hdr.reason_len);
        let value = hdr.broken_value.load(Ordering::Relaxed);
        match hdr.broken_kind.load(Ordering::Relaxed) {
            BROKEN_INIT => Dead::Init(reason),
            BROKEN_START => Dead::Start {
                role: "worker",
                pid: hdr.broken_pid.load(Ordering::Relaxed),
                waited: Duration::from_millis(value),
            },
            BROKEN_CORRUPT => Dead::Corrupt(Corrupt::from_raw(hdr.broken_field.load(Ordering::Relaxed), value)),
            _ => Dead::Broken(reason),
        }
    }

    /// How the manager ended, if it has (never waits: someone reaping it holds the lock).
    fn manager_status(&self) -> Option<ExitStatus> {
        let mut m = match self.manager.try_lock() {
            Ok(m) => m,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
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
        self.manager_pid
    }

    /// The pool's item timeout in ms (0: none), see [`timeout_ms`].
    pub fn task_timeout_ms(&self) -> u32 {
        self.task_timeout_ms
    }

    /// Set the pool's item timeout (before the core is shared).
    pub fn set_task_timeout(&mut self, timeout: Option<Duration>) {
        self.task_timeout_ms = timeout_ms(timeout);
    }

    /// Submit one task whose result goes to `cell`, waiting for room (the `apply_async`
    /// forms, Pod and serde).
    pub fn submit_cell(&self, job: &Job<'_>, cell: &Arc<Cell>) -> Result<(), PoolError> {
        self.drive(Deadline::never(), |core, d| {
            Ok(core.try_submit(d, job, Sink::Cell(Arc::clone(cell)))?.then_some(()))
        })
    }

    /// Submit one entry to the least-loaded worker with room. `false`: every ring is full.
    pub fn try_submit(&self, d: &mut Dispatch, job: &Job<'_>, sink: Sink) -> Result<bool, PoolError> {
        self.try_submit_timed(d, job, sink, self.task_timeout_ms)
    }

    /// [`try_submit`](Self::try_submit) with each item's timeout in ms (0: none).
    pub fn try_submit_timed(
        &self,
        d: &mut Dispatch,
        job: &Job<'_>,
        sink: Sink,
        timeout_ms: u32,
    ) -> Result<bool, PoolError> {
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
        write_job(&entry, job, timeout_ms, |tramp, func, count, arg_len| {
            entry_mac(self.key, w, side.head, tramp, func, count, arg_len)
        });
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

    /// Move finished entries to their sinks; callbacks to run outside the lock go to `fired`.
    /// A `tail` outside `harvested..=head` is reported (and nothing of that mailbox taken).
    fn harvest(&self, d: &mut Dispatch, fired: &mut Fired) -> Result<(), Corrupt> {
        let view = self.view();
        let mut bad = Ok(());
        for (w, side) in d.sides.iter_mut().enumerate() {
            let tail = view.mailbox(w).tail.load(Ordering::Acquire);
            if tail.wrapping_sub(side.harvested) > side.head.wrapping_sub(side.harvested) {
                bad = Err(Corrupt::new("mailbox.tail", u64::from(tail)));
                continue;
            }
            while side.harvested != tail {
                let Some(sink) = side.sinks.pop_front() else { break };
                let entry = view.entry(w, side.harvested);
                deliver(&entry, sink, fired);
                side.harvested = side.harvested.wrapping_add(1);
            }
        }
        bad
    }

    /// Fail everything in flight and refuse new work.
    fn kill_outstanding(&self, d: &mut Dispatch, why: Dead) {
        let mut fired = Vec::new();
        let _ = self.harvest(d, &mut fired);
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
            let harvested = self.harvest(&mut d, &mut fired);
            let mut stop_workers = false;
            if d.dead.is_none() {
                if let Err(c) = harvested {
                    self.kill_outstanding(&mut d, Dead::Corrupt(c));
                    stop_workers = true;
                } else if hdr.manager.load(Ordering::Acquire) == MGR_BROKEN {
                    self.kill_outstanding(&mut d, self.broken());
                }
            }
            let out = step(self, &mut d);
            let snap = self.snapshot(&d);
            drop(d);
            if stop_workers {
                // Do not trust the mailboxes any more: the manager kills the workers.
                hdr.state.store(KILL, Ordering::SeqCst);
                os::eventfd_ring(self.bell.as_raw_fd());
            }
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

    /// Wait for progress: spin (the crate's wait policy), then park on `completions`.
    /// `false`: nothing happened for a while (time to check the manager).
    fn park(&self, snap: &[u32], deadline: Deadline) -> bool {
        let hdr = self.view().header();
        let ready = || self.progressed(snap).then_some(true);
        spin_then(WaitPolicy::process_default(), Cadence::HandOff, key_of(&hdr.completions), &deadline, ready, || {
            hdr.sleepers.fetch_add(1, Ordering::SeqCst);
            let c = hdr.completions.load(Ordering::SeqCst);
            let woke = if self.progressed(snap) {
                true
            } else {
                futex::wait(&hdr.completions, c, deadline, Some(Duration::from_millis(100))) == futex::Wait::Woken
            };
            hdr.sleepers.fetch_sub(1, Ordering::SeqCst);
            woke
        })
    }

    /// If the manager has ended, the pool is broken: fail everything. (If we asked it to
    /// stop, `terminate`/`join` hold the manager's lock and have marked the tasks already.)
    fn check_manager(&self) {
        if let Some(status) = self.manager_status() {
            let mut d = self.lock();
            if d.dead.is_none() {
                let why = match self.view().header().state.load(Ordering::SeqCst) {
                    RUN => Dead::Broken(format!("the pool's manager process ended ({status})")),
                    STOP => Dead::Joined,
                    _ => Dead::Terminated,
                };
                self.kill_outstanding(&mut d, why);
            }
        }
    }

    fn run_callbacks(&self, fired: &mut Fired) {
        for (cell, cb) in fired.drain(..) {
            run_fired(&cell, cb);
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

    /// A failed call's tail: cancel its entries that `owns` picks and that have not started,
    /// then wait until none of them can still run (each is harvested, or the workers are
    /// gone). Afterwards nothing of the call touches shared data any more.
    pub fn settle(&self, owns: &dyn Fn(&Sink) -> bool) {
        {
            let d = self.lock();
            let view = self.view();
            for (w, side) in d.sides.iter().enumerate() {
                for (i, sink) in side.sinks.iter().enumerate() {
                    if owns(sink) {
                        let entry = view.entry(w, side.harvested.wrapping_add(i as u32));
                        entry.head.cancel.store(1, Ordering::SeqCst);
                    }
                }
            }
        }
        let _ =
            self.drive(Deadline::never(), |_, d| Ok((!d.sides.iter().any(|s| s.sinks.iter().any(owns))).then_some(())));
        if self.is_dead() {
            // Its entries were failed without being harvested: wait for the workers to be
            // gone (terminate() holds the manager's lock until they are).
            let mut m = self.manager.lock().unwrap_or_else(PoisonError::into_inner);
            self.reap(&mut m, Deadline::after(Duration::from_secs(3)));
        }
    }

    /// Stop at once: outstanding tasks fail with `Terminated` (before anything else, so
    /// every waiter sees that), then the workers are killed and the manager reaped.
    pub fn terminate(&self) {
        let mut m = self.manager.lock().unwrap_or_else(PoisonError::into_inner);
        {
            let mut d = self.lock();
            self.kill_outstanding(&mut d, Dead::Terminated);
        }
        self.view().header().state.store(KILL, Ordering::SeqCst);
        os::eventfd_ring(self.bell.as_raw_fd());
        self.reap(&mut m, Deadline::after(Duration::from_secs(3)));
    }

    /// Let workers finish what they have and exit; then reap the manager, all by `deadline`
    /// (then they are killed). `false`: another thread holds the manager past the deadline.
    pub fn stop_gracefully(&self, deadline: Deadline) -> bool {
        let Some(mut m) = self.lock_manager_until(deadline) else { return false };
        let view = self.view();
        view.header().state.store(STOP, Ordering::SeqCst);
        os::eventfd_ring(self.bell.as_raw_fd());
        for w in 0..self.shape.workers {
            let mb = view.mailbox(w);
            mb.doorbell.fetch_add(1, Ordering::SeqCst);
            futex::wake_all(&mb.doorbell);
        }
        self.reap(&mut m, deadline);
        let mut d = self.lock();
        self.kill_outstanding(&mut d, Dead::Joined);
        true
    }

    fn lock_manager_until(&self, deadline: Deadline) -> Option<MutexGuard<'_, Child>> {
        loop {
            match self.manager.try_lock() {
                Ok(m) => return Some(m),
                Err(TryLockError::Poisoned(p)) => return Some(p.into_inner()),
                Err(TryLockError::WouldBlock) if deadline.passed() => return None,
                Err(TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }

    /// Wait for the manager to exit until `deadline`, then kill it. Its workers die with it
    /// (it kills them on its way out, and `PR_SET_PDEATHSIG` covers a SIGKILL).
    fn reap(&self, m: &mut Child, deadline: Deadline) {
        let record = self.view().exit_record();
        if !matches!(m.wait(record, deadline), Ok(Some(_))) {
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

/// Write a job into an entry the pool owns, with the MAC `mac(tramp, func, count, arg_len)`.
fn write_job(entry: &Entry<'_>, job: &Job<'_>, timeout_ms: u32, mac: impl FnOnce(u64, u64, u32, u32) -> u64) {
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
    h.mac.store(mac(job.tramp, job.func, job.count, at as u32), Ordering::Relaxed);
    h.outcome.store(OUT_NONE, Ordering::Relaxed);
    h.res_len.store(0, Ordering::Relaxed);
    h.cancel.store(0, Ordering::Relaxed);
    h.msg_at.store(0, Ordering::Relaxed);
    h.timeout_ms.store(timeout_ms, Ordering::Relaxed);
}

/// A timeout as an entry carries it: whole milliseconds, at least 1, 0 for none.
pub(crate) fn timeout_ms(timeout: Option<Duration>) -> u32 {
    timeout.map_or(0, |t| t.as_millis().clamp(1, u128::from(u32::MAX)) as u32)
}
