//! The manager: a single-threaded process that forks the workers, watches their pidfds,
//! fails the in-flight task of a worker that died (naming its pid and signal), and forks a
//! replacement. Because it is single-threaded, its forks are always safe, whatever threads
//! the pool's own process has by then.

use std::os::fd::RawFd;
use std::sync::atomic::Ordering;

use super::layout::{KILL, MGR_BROKEN, MGR_READY, OUT_DIED, REASON_CAP, RUN, STOP, View, read_text, write_text};
use super::worker::{EXIT_INIT_FAILED, worker_main};
use crate::process::{Child, ExitStatus, Method, os, spawn};
use crate::segment::Segment;
use crate::sys::futex;

/// Entry point of the manager process. `fds[0]` is the pool's eventfd doorbell.
pub(crate) fn manager_main(seg: &Segment, _arg: u64, fds: &[RawFd]) -> i32 {
    let view = View::new(seg);
    let hdr = view.header();
    let Some(&bell) = fds.first() else { return 2 };
    // The pool's process, by pidfd: its end is ours (whatever thread started us).
    let Ok(pool) = os::pidfd_open(hdr.pool_pid as libc::pid_t) else { return 3 };
    // SAFETY: getppid cannot fail.
    if hdr.direct_fork != 0 && unsafe { libc::getppid() } != hdr.pool_pid as libc::pid_t {
        return os::EXIT_ORPHANED; // the pool died before we opened its pidfd
    }
    let n = view.shape().workers;
    let mut kids: Vec<Option<Child>> = (0..n).map(|_| None).collect();
    for (w, kid) in kids.iter_mut().enumerate() {
        match start_worker(&view, seg, w) {
            Some(c) => *kid = Some(c),
            None => return broken(&view, &mut kids, "the manager could not fork a worker (process limit?)"),
        }
    }
    hdr.manager.store(MGR_READY, Ordering::SeqCst);
    wake_pool(&view);
    let mut fds: Vec<RawFd> = Vec::new();
    let mut ready = Vec::new();
    let record = view.exit_record();
    loop {
        fds.clear();
        fds.push(bell);
        fds.push(std::os::fd::AsRawFd::as_raw_fd(&pool));
        fds.extend(kids.iter().map(|k| k.as_ref().map_or(-1, |c| c.pidfd())));
        if os::poll_readable(&fds, None, &mut ready).is_err() {
            return broken(&view, &mut kids, "the manager's poll failed");
        }
        if ready.get(1) == Some(&true) {
            // The pool's process is gone: nobody will read results.
            kill_all(&view, &mut kids);
            return 0;
        }
        if ready.first() == Some(&true) {
            os::eventfd_drain(bell);
        }
        let state = hdr.state.load(Ordering::SeqCst);
        if state == KILL {
            kill_all(&view, &mut kids);
            return 0;
        }
        for w in 0..n {
            if ready.get(w + 2) != Some(&true) {
                continue;
            }
            let Some(kid) = kids[w].as_mut() else { continue };
            let Ok(Some(status)) = kid.try_wait(record) else { continue };
            let pid = kid.pid();
            kids[w] = None;
            if status == ExitStatus::Code(EXIT_INIT_FAILED) {
                let mb = view.mailbox(w);
                let why = read_text(view.init_error_area(w), 60, &mb.init_error_len);
                return broken(&view, &mut kids, &format!("the initializer panicked in worker {pid}: {why}"));
            }
            fail_in_flight(&view, w, pid, status);
            if hdr.state.load(Ordering::SeqCst) == RUN {
                match start_worker(&view, seg, w) {
                    Some(c) => kids[w] = Some(c),
                    None => return broken(&view, &mut kids, "the manager could not fork a replacement worker"),
                }
            }
        }
        if hdr.state.load(Ordering::SeqCst) == STOP {
            ring_all(&view);
            if kids.iter().all(Option::is_none) {
                return 0;
            }
        }
    }
}

fn start_worker(view: &View<'_>, seg: &Segment, w: usize) -> Option<Child> {
    let child = spawn(Method::Fork, seg, worker_main, w as u64, &[], true).ok()?;
    let mb = view.mailbox(w);
    mb.pid.store(child.pid(), Ordering::SeqCst);
    mb.generation.fetch_add(1, Ordering::SeqCst);
    Some(child)
}

/// If worker `w` died inside a task, fail that task with its pid and signal.
fn fail_in_flight(view: &View<'_>, w: usize, pid: u32, status: ExitStatus) {
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
    entry.head.died_pid.store(pid, Ordering::Relaxed);
    entry.head.died_signal.store(signal, Ordering::Relaxed);
    entry.head.res_len.store(0, Ordering::Relaxed);
    entry.head.outcome.store(OUT_DIED, Ordering::Relaxed);
    mb.tail.store(t.wrapping_add(1), Ordering::SeqCst);
    wake_pool(view);
}

fn wake_pool(view: &View<'_>) {
    let hdr = view.header();
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

fn kill_all(view: &View<'_>, kids: &mut [Option<Child>]) {
    let record = view.exit_record();
    for kid in kids.iter().flatten() {
        let _ = kid.signal(libc::SIGKILL);
    }
    for kid in kids.iter_mut() {
        if let Some(mut c) = kid.take() {
            c.kill_and_reap(record);
        }
    }
}

fn broken(view: &View<'_>, kids: &mut [Option<Child>], why: &str) -> i32 {
    let hdr = view.header();
    write_text(view.reason_area(), REASON_CAP, &hdr.reason_len, why);
    hdr.manager.store(MGR_BROKEN, Ordering::SeqCst);
    kill_all(view, kids);
    wake_pool(view);
    1
}
