//! The supervisor: the pool's single-threaded *manager* process (its pid is
//! [`Pool::manager_pid`](super::Pool::manager_pid)), which forks the workers, watches their pidfds,
//! fails the in-flight task of a worker that died (naming its pid and signal), and gives its
//! mailbox to a replacement: the spare worker it forked ahead of time (then it forks the next
//! spare), or a fresh fork if it has none. Because it is single-threaded, its forks are always
//! safe, whatever threads the pool's own process has by then.
//!
//! Start-up is bounded: a worker that has not reported ready (initializer done) within the
//! pool's start timeout is killed and the pool is broken with
//! [`PoolError::StartTimeout`](super::PoolError::StartTimeout) — at start and for every
//! replacement — so a worker that deadlocked in its first instructions cannot hang a call.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::config::{Config, Corrupt};
use super::layout::{
    BROKEN_CORRUPT, BROKEN_INIT, BROKEN_OTHER, BROKEN_START, Header, KILL, MGR_BROKEN, MGR_READY, OUT_DIED,
    OUT_TIMEOUT, REASON_CAP, RUN, STOP, View, read_text, reason_area, write_text,
};
use super::timeout::{Judged, Watch};
use super::words::Tails;
use super::worker::{EXIT_CORRUPT_HEAD, EXIT_INIT_FAILED, SPARE, worker_main};
use crate::process::{Child, ExitRecord, ExitStatus, Method, spawn};
use crate::segment::Segment;
use crate::sys::futex;
use crate::sys::process as os;

/// Why the manager gives up.
enum GiveUp<'a> {
    Other(&'a str),
    Init(&'a str),
    Start { pid: u32, waited: Duration },
    Corrupt(Corrupt),
}

/// Entry point of the manager process. `key` is the pool's MAC key; `fds[0]` is the pool's
/// eventfd doorbell (which the workers ring when they are ready).
pub(crate) fn manager_main(seg: &Segment, key: u64, fds: &[RawFd]) -> i32 {
    let Some(hdr) = View::header_of(seg) else { return 4 };
    let config = match Config::load(seg, key) {
        Ok(c) => c,
        Err(c) => return give_up(seg, hdr, &mut [], GiveUp::Corrupt(c)),
    };
    let config = config.install();
    // Forked from the pool's process, we carry its heap; what of it is free need not be copied
    // into every worker we fork (each fork copies the page tables of our memory).
    os::release_free_heap();
    let Some(view) = View::with_shape(seg, config.shape) else { return 4 };
    let Some(&bell) = fds.first() else { return 2 };
    // The pool's process, by pidfd: its end is ours (whatever thread started us).
    let Ok(pool) = os::pidfd_open(config.pool_pid) else { return 3 };
    if config.direct_fork && os::getppid() != config.pool_pid {
        return os::EXIT_ORPHANED; // the pool died before we opened its pidfd
    }
    let n = config.shape.workers;
    // `kids[n]` is the spare: a worker forked ahead, waiting to take the mailbox of the next
    // worker that dies, so that a crash or a timeout costs no fork on the critical path.
    let mut kids: Vec<Option<Child>> = (0..=n).map(|_| None).collect();
    let mut watch = Watch::new(n);
    let mut tails = Tails::new(n + 1, config.stderr_tail);
    // When each worker that has not reported ready yet was forked.
    let mut starting: Vec<Option<Instant>> = vec![None; n];
    for w in 0..n {
        match start_worker(&view, seg, w, bell, &mut tails) {
            Some(c) => kids[w] = Some(c),
            None => {
                return give_up(
                    seg,
                    hdr,
                    &mut kids,
                    GiveUp::Other("the manager could not fork a worker (process limit?)"),
                );
            }
        }
        starting[w] = Some(Instant::now());
    }
    let mut announced = false;
    let mut fds: Vec<RawFd> = Vec::new();
    let mut ready = Vec::new();
    let record = view.exit_record();
    loop {
        // Ready workers; a worker that is late is killed and breaks the pool.
        for w in 0..n {
            let (Some(since), Some(kid)) = (starting[w], kids[w].as_mut()) else { continue };
            if view.mailbox(w).ready.load(Ordering::SeqCst) == kid.pid() {
                starting[w] = None;
            } else if since.elapsed() >= config.start_timeout {
                let pid = kid.pid();
                kid.kill_and_reap(record);
                let waited = config.start_timeout;
                return give_up(seg, hdr, &mut kids, GiveUp::Start { pid, waited });
            }
        }
        if !announced && starting.iter().all(Option::is_none) {
            announced = true;
            hdr.manager.store(MGR_READY, Ordering::SeqCst);
            wake_pool(hdr);
        }
        if announced && kids[n].is_none() && hdr.state.load(Ordering::SeqCst) == RUN {
            // Without a spare (the fork failed) a replacement is forked when needed.
            kids[n] = start_spare(seg, n, bell, &mut tails);
        }
        let next_check = starting
            .iter()
            .flatten()
            .map(|s| (*s + config.start_timeout).saturating_duration_since(Instant::now()))
            .min();
        fds.clear();
        fds.push(bell);
        fds.push(std::os::fd::AsRawFd::as_raw_fd(&pool));
        fds.extend(kids.iter().map(|k| k.as_ref().map_or(-1, |c| c.pidfd())));
        fds.extend(tails.fds());
        let next_check = next_check.map(|d| d.max(Duration::from_millis(1)));
        // Overdue items' workers are killed here; sleep until the next item's deadline.
        let wait = match (next_check, watch.check(&view, &kids[..n])) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if os::poll_readable(&fds, wait, &mut ready).is_err() {
            return give_up(seg, hdr, &mut kids, GiveUp::Other("the manager's poll failed"));
        }
        if ready.get(1) == Some(&true) {
            // The pool's process is gone: nobody will read results.
            kill_all(record, &mut kids);
            return 0;
        }
        if ready.first() == Some(&true) {
            os::eventfd_drain(bell);
        }
        let state = hdr.state.load(Ordering::SeqCst);
        if state == KILL {
            kill_all(record, &mut kids);
            return 0;
        }
        for w in 0..=n {
            if ready.get(w + 3 + n) == Some(&true) {
                tails.drain(w);
            }
        }
        if ready.get(2 + n) == Some(&true)
            && let Some(spare) = kids[n].as_mut()
            && let Ok(Some(_)) = spare.try_wait(record)
        {
            kids[n] = None; // killed while waiting: another is forked below
            let _ = tails.last_words(n);
        }
        for w in 0..n {
            if ready.get(w + 2) != Some(&true) {
                continue;
            }
            let Some(kid) = kids[w].as_mut() else { continue };
            let Ok(Some(status)) = kid.try_wait(record) else { continue };
            let pid = kid.pid();
            kids[w] = None;
            starting[w] = None;
            if status == ExitStatus::Code(EXIT_INIT_FAILED) {
                let mb = view.mailbox(w);
                let why = read_text(view.init_error_area(w), 60, &mb.init_error_len);
                let text = format!("the initializer panicked in worker {pid}: {why}");
                return give_up(seg, hdr, &mut kids, GiveUp::Init(&text));
            }
            if status == ExitStatus::Code(EXIT_CORRUPT_HEAD) {
                let head = view.mailbox(w).head.load(Ordering::SeqCst);
                return give_up(seg, hdr, &mut kids, GiveUp::Corrupt(Corrupt::new("mailbox.head", u64::from(head))));
            }
            let words = tails.last_words(w);
            fail_in_flight(&view, w, pid, status, watch.take(w), &words);
            if hdr.state.load(Ordering::SeqCst) == RUN {
                let spare = kids[n].take().map(|c| assign_spare(&view, w, n, c, &mut tails));
                match spare.or_else(|| start_worker(&view, seg, w, bell, &mut tails)) {
                    Some(c) => kids[w] = Some(c),
                    None => {
                        let why = GiveUp::Other("the manager could not fork a replacement worker");
                        return give_up(seg, hdr, &mut kids, why);
                    }
                }
                starting[w] = Some(Instant::now());
            }
        }
        if hdr.state.load(Ordering::SeqCst) == STOP {
            if let Some(mut spare) = kids[n].take() {
                spare.kill_and_reap(record);
            }
            ring_all(&view);
            if kids.iter().all(Option::is_none) {
                return 0;
            }
        }
    }
}

/// Fork a worker with index `arg` (a mailbox, or `SPARE`), its stderr to tail `slot`.
fn fork_worker(seg: &Segment, arg: u64, slot: usize, bell: RawFd, tails: &mut Tails) -> Option<Child> {
    // With capture on, the worker's stderr is a pipe to us (its write end closes here).
    let stderr = tails.open(slot);
    let fds: Vec<RawFd> = std::iter::once(bell).chain(stderr.as_ref().map(AsRawFd::as_raw_fd)).collect();
    spawn(Method::Fork, seg, worker_main, arg, &fds, true).ok()
}

/// Clear what mailbox `w`'s dead predecessor left, before its new worker can run.
fn clear_mailbox(view: &View<'_>, w: usize) {
    let mb = view.mailbox(w);
    mb.ready.store(0, Ordering::SeqCst);
    // The dead predecessor's item clock is no deadline of the new worker.
    mb.item_start_ns.store(0, Ordering::SeqCst);
}

/// Name mailbox `w`'s new worker.
fn hand_over(view: &View<'_>, w: usize, child: Child) -> Child {
    let mb = view.mailbox(w);
    mb.pid.store(child.pid(), Ordering::SeqCst);
    mb.generation.fetch_add(1, Ordering::SeqCst);
    child
}

fn start_worker(view: &View<'_>, seg: &Segment, w: usize, bell: RawFd, tails: &mut Tails) -> Option<Child> {
    clear_mailbox(view, w);
    let child = fork_worker(seg, w as u64, w, bell, tails)?;
    Some(hand_over(view, w, child))
}

/// Fork the spare (its stderr in tail slot `n`); it waits for [`assign_spare`].
fn start_spare(seg: &Segment, n: usize, bell: RawFd, tails: &mut Tails) -> Option<Child> {
    fork_worker(seg, SPARE, n, bell, tails)
}

/// The spare takes mailbox `w` (its stderr tail moves from slot `n` to `w`).
fn assign_spare(view: &View<'_>, w: usize, n: usize, spare: Child, tails: &mut Tails) -> Child {
    clear_mailbox(view, w);
    tails.adopt(w, n);
    let spare = hand_over(view, w, spare);
    // It finds its mailbox by the pid `hand_over` stored.
    let hdr = view.header();
    hdr.spare_bell.fetch_add(1, Ordering::SeqCst);
    futex::wake_all(&hdr.spare_bell);
    spare
}

/// If worker `w` died inside a task, fail that task's current item with the pid and signal
/// (or as timed out, if `judged` killed it there), its last words, and which item it was.
fn fail_in_flight(view: &View<'_>, w: usize, pid: u32, status: ExitStatus, judged: Option<Judged>, words: &str) {
    let mb = view.mailbox(w);
    let t = mb.tail.load(Ordering::SeqCst);
    let running = mb.running.load(Ordering::SeqCst);
    let head = mb.head.load(Ordering::SeqCst);
    if running != t.wrapping_add(1) || head == t {
        return; // idle, or between tasks: nothing was lost
    }
    mb.deaths.fetch_add(1, Ordering::SeqCst);
    let entry = view.entry(w, t);
    let signal = match status {
        ExitStatus::Signal(s) => s as u32,
        ExitStatus::Code(c) => 0x100 | (c as u32 & 0xff),
    };
    let (outcome, requeue, ran) = match judged {
        Some(j) if j.still_on(mb) => (OUT_TIMEOUT, 0, j.ran()),
        // Killed for an item that had just finished: the next one did nothing wrong.
        Some(_) => (OUT_DIED, 1, Duration::ZERO),
        None => (OUT_DIED, 0, Duration::ZERO),
    };
    let h = entry.head;
    h.died_pid.store(pid, Ordering::Relaxed);
    h.died_signal.store(signal, Ordering::Relaxed);
    h.requeue.store(requeue, Ordering::Relaxed);
    h.ran_us.store(ran.as_micros().min(u128::from(u64::MAX)) as u64, Ordering::Relaxed);
    let (item, done) = (mb.item.load(Ordering::SeqCst), mb.item_bytes.load(Ordering::SeqCst));
    // SAFETY: the worker that owned the entry is dead and reaped; the pool reads it only
    // after the `tail` store below.
    unsafe { entry.set_failure(outcome, item, done, words) };
    mb.tail.store(t.wrapping_add(1), Ordering::SeqCst);
    wake_pool(view.header());
}

fn wake_pool(hdr: &Header) {
    hdr.completions.fetch_add(1, Ordering::SeqCst);
    futex::wake_all(&hdr.completions);
}

fn ring_all(view: &View<'_>) {
    for w in 0..view.shape().workers {
        let mb = view.mailbox(w);
        mb.doorbell.fetch_add(1, Ordering::SeqCst);
        futex::wake_all(&mb.doorbell);
    }
}

fn kill_all(record: &ExitRecord, kids: &mut [Option<Child>]) {
    for kid in kids.iter().flatten() {
        let _ = kid.signal(libc::SIGKILL);
    }
    for kid in kids.iter_mut() {
        if let Some(mut c) = kid.take() {
            c.kill_and_reap(record);
        }
    }
}

/// Kill and reap every worker, then publish why the pool is broken (so that when the pool
/// sees `MGR_BROKEN`, none of its tasks can still run).
fn give_up(seg: &Segment, hdr: &Header, kids: &mut [Option<Child>], why: GiveUp<'_>) -> i32 {
    kill_all(ExitRecord::of(seg), kids);
    let (kind, pid, field, value, text) = match why {
        GiveUp::Other(t) => (BROKEN_OTHER, 0, 0, 0, t.to_owned()),
        GiveUp::Init(t) => (BROKEN_INIT, 0, 0, 0, t.to_owned()),
        GiveUp::Start { pid, waited } => {
            (BROKEN_START, pid, 0, waited.as_millis() as u64, format!("worker {pid} did not start"))
        }
        GiveUp::Corrupt(c) => (BROKEN_CORRUPT, 0, c.index(), c.value, format!("{} = {}", c.field(), c.value)),
    };
    write_text(reason_area(seg), REASON_CAP, &hdr.reason_len, &text);
    hdr.broken_kind.store(kind, Ordering::Relaxed);
    hdr.broken_pid.store(pid, Ordering::Relaxed);
    hdr.broken_field.store(field, Ordering::Relaxed);
    hdr.broken_value.store(value, Ordering::Relaxed);
    hdr.manager.store(MGR_BROKEN, Ordering::SeqCst);
    wake_pool(hdr);
    1
}
