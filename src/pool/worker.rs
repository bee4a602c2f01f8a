//! The worker process: run the initializer, then take entries from its mailbox in order,
//! spinning under the crate's [`WaitPolicy`] and then parking on a futex when idle.

use std::cell::RefCell;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::config::Config;
use super::layout::{
    Entry, Header, INIT_ARG_CAP, KILL, Mailbox, OUT_CANCELLED, OUT_CORRUPT, OUT_ERROR, OUT_OK, OUT_PANIC, RUN, View,
    write_text,
};
use super::task::{InitTramp, Task, Tramp};
use super::timeout::{begin_entry, end_entry};
use crate::segment::Segment;
use crate::sync::WaitPolicy;
use crate::sync::wait::{Cadence, key_of, spin_then};
use crate::sys::process as os;
use crate::sys::{Deadline, futex, stdio};

/// Exit code of a worker whose initializer panicked.
pub(crate) const EXIT_INIT_FAILED: i32 = 120;

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Capture panic messages (with their location) instead of printing them: the pool hands
/// them to the caller. With `to_stderr` (the manager captures this worker's stderr), a panic
/// that will end in an abort — one while another unwinds (in a `Drop`), or any panic in a
/// `panic = "abort"` build — is printed there with the panic it interrupted, so it reaches
/// the caller as last words. Caught panics are not printed (they are the task's error).
fn install_panic_capture(to_stderr: bool) {
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
            (Some(s), _) => s,
            (None, Some(s)) => s.as_str(),
            (None, None) => "panic with a non-string payload",
        };
        let text = match info.location() {
            Some(l) => format!("{msg} (at {}:{}:{})", l.file(), l.line(), l.column()),
            None => msg.to_owned(),
        };
        // A panic not caught yet (the catch takes it) means this one interrupts its unwinding.
        let interrupted = LAST_PANIC.with(|p| p.borrow().clone());
        if to_stderr && (cfg!(panic = "abort") || interrupted.is_some()) {
            use std::io::Write;
            let pid = std::process::id();
            let mut err = std::io::stderr().lock();
            if let Some(first) = interrupted {
                let _ = writeln!(err, "worker {pid} panicked: {first}");
            }
            let _ = writeln!(err, "worker {pid} panicked: {text}");
        }
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(text));
    }));
}

fn take_panic(payload: &(dyn std::any::Any + Send)) -> String {
    LAST_PANIC.with(|p| p.borrow_mut().take()).unwrap_or_else(|| crate::process::panic_message(payload))
}

/// The index a spare worker is started with: it waits for the manager to give it a mailbox.
pub(crate) const SPARE: u64 = u64::MAX;

/// A spare worker's wait for its mailbox: the one whose `pid` the manager set to ours
/// (`None`: the pool stops, or no view).
fn wait_assignment(seg: &Segment, config: &Config) -> Option<usize> {
    let view = View::with_shape(seg, config.shape)?;
    let hdr = view.header();
    let me = std::process::id();
    loop {
        let bell = hdr.spare_bell.load(Ordering::SeqCst);
        if let Some(w) = (0..config.shape.workers).find(|&w| view.mailbox(w).pid.load(Ordering::SeqCst) == me) {
            return Some(w);
        }
        if hdr.state.load(Ordering::SeqCst) != RUN {
            return None;
        }
        futex::wait(&hdr.spare_bell, bell, Deadline::never(), Some(Duration::from_millis(200)));
    }
}

/// Exit code of a worker whose mailbox `head` was impossible (the manager breaks the pool).
pub(crate) const EXIT_CORRUPT_HEAD: i32 = 122;
/// Exit code of a worker started without the manager's configuration (a bug).
const EXIT_NO_CONFIG: i32 = 123;

/// Entry point of a worker process (`arg` = its mailbox index, `fds[0]` the manager's
/// doorbell, rung once the worker is ready).
pub(crate) fn worker_main(seg: &Segment, index: u64, fds: &[RawFd]) -> i32 {
    // The manager's checked copy of the configuration: this process is its fork.
    let Some(config) = Config::installed() else { return EXIT_NO_CONFIG };
    let w = match index {
        SPARE => match wait_assignment(seg, config) {
            Some(w) => w,
            None => return 0,
        },
        w => w as usize,
    };
    let Some(view) = View::with_shape(seg, config.shape).filter(|_| w < config.shape.workers) else {
        return EXIT_NO_CONFIG;
    };
    let mb = view.mailbox(w);
    let hdr = view.header();
    // Publish this worker's pid before it can run a task (the manager stores it too, but only
    // after fork returns there: a result could otherwise come back from an unlisted pid).
    mb.pid.store(std::process::id(), Ordering::SeqCst);
    // The manager's pipe, if it captures our stderr (last words).
    let captured = fds.get(1).is_some_and(|&fd| stdio::redirect_stderr(fd).is_ok());
    install_panic_capture(captured);
    if config.init_tramp != 0 {
        let mut arg = [0u8; INIT_ARG_CAP];
        let len = config.init_arg_len.min(INIT_ARG_CAP);
        // SAFETY: the area has INIT_ARG_CAP bytes inside the header; the pool wrote it before
        // the manager started and never writes it again.
        unsafe { std::ptr::copy_nonoverlapping(view.init_arg_area(), arg.as_mut_ptr(), len) };
        let args = &arg[..len];
        // SAFETY: `init_tramp`/`init_fn` were checked against their MAC (Config::load): the
        // pool wrote them from an InitTramp instance and a matching fn item of this binary
        // image, which this process shares.
        let run = || unsafe {
            let tramp = std::mem::transmute::<usize, InitTramp>(config.init_tramp as usize);
            tramp(config.init_fn, args)
        };
        if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
            let text = take_panic(payload.as_ref());
            write_text(view.init_error_area(w), 60, &mb.init_error_len, &text);
            return EXIT_INIT_FAILED;
        }
    }
    // Ready: the manager stops counting this worker's start-up time.
    mb.ready.store(std::process::id(), Ordering::SeqCst);
    if let Some(&bell) = fds.first() {
        os::eventfd_ring(bell);
    }
    let mut done: u64 = 0;
    let bell = fds.first().copied().unwrap_or(-1);
    loop {
        let t = mb.tail.load(Ordering::Relaxed);
        match wait_for_work(&view, mb, t) {
            Work::Stop => return 0,
            Work::Corrupt => return EXIT_CORRUPT_HEAD,
            Work::Entry => {}
        }
        run_entry(config, &view, w, mb, t, bell);
        mb.tail.store(t.wrapping_add(1), Ordering::SeqCst);
        if hdr.sleepers.load(Ordering::SeqCst) != 0 {
            hdr.completions.fetch_add(1, Ordering::SeqCst);
            futex::wake_all(&hdr.completions);
        }
        done += 1;
        if config.max_tasks != 0 && done >= config.max_tasks {
            return 0; // the manager starts a fresh worker in this mailbox
        }
    }
}

fn run_entry(config: &Config, view: &View<'_>, w: usize, mb: &Mailbox, t: u32, bell: RawFd) {
    let entry = view.entry(w, t);
    let h = entry.head;
    // Item 0 starts (and its clock) before `running` says the entry is in flight, so a death
    // report never reads the previous entry's item.
    begin_entry(mb, view.header(), h.timeout_ms.load(Ordering::Relaxed), bell);
    mb.running.store(t.wrapping_add(1), Ordering::SeqCst);
    run_checked(config, &entry, w, mb, t);
    end_entry(mb);
}

fn run_checked(config: &Config, entry: &Entry<'_>, w: usize, mb: &Mailbox, t: u32) {
    let h = entry.head;
    h.died_pid.store(std::process::id(), Ordering::Relaxed);
    if h.cancel.load(Ordering::SeqCst) != 0 {
        // Its call failed and was cancelled before this entry started: skip it.
        h.res_len.store(0, Ordering::Relaxed);
        h.outcome.store(OUT_CANCELLED, Ordering::Relaxed);
        return;
    }
    let (tramp, func) = (h.tramp.load(Ordering::Relaxed), h.func.load(Ordering::Relaxed));
    let (count, arg_len) = (h.count.load(Ordering::Relaxed), h.arg_len.load(Ordering::Relaxed));
    if h.mac.load(Ordering::Relaxed) != config.entry_mac(w, t, tramp, func, count, arg_len) {
        // Not written by the pool (or not for this slot): never call its addresses.
        h.res_len.store(0, Ordering::Relaxed);
        h.outcome.store(OUT_CORRUPT, Ordering::Relaxed);
        return;
    }
    let arg_len = arg_len as usize;
    let msg = entry.msg();
    // SAFETY: per the mailbox protocol this worker owns the entry from `head > t` until it
    // publishes `tail = t + 1`: the pool neither reads nor writes its body meanwhile. The
    // areas are `msg` bytes each inside the mapping.
    let (args, out) = unsafe {
        (
            std::slice::from_raw_parts(entry.arg_ptr(), arg_len.min(msg)),
            std::slice::from_raw_parts_mut(entry.res_ptr(), msg),
        )
    };
    // SAFETY: `tramp` and `func` carry the pool's MAC for this worker and slot, so the pool
    // wrote them from a `Tramp` instance and the matching user fn item, both of this binary
    // image, which this process shares.
    let call = || unsafe {
        let tramp = std::mem::transmute::<usize, Tramp>(tramp as usize);
        tramp(func, Task { args, count, out })
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(call));
    let failed_at = || (mb.item.load(Ordering::Relaxed), mb.item_bytes.load(Ordering::Relaxed));
    match outcome {
        Ok(Ok(len)) => {
            h.res_len.store(len as u32, Ordering::Relaxed);
            h.outcome.store(OUT_OK, Ordering::Relaxed);
        }
        Ok(Err(text)) => {
            let (item, done) = failed_at();
            // SAFETY: this worker owns the entry's result area (see above).
            unsafe { entry.set_failure(OUT_ERROR, item, done, &text) }
        }
        Err(payload) => {
            let text = take_panic(payload.as_ref());
            let (item, done) = failed_at();
            // SAFETY: as above.
            unsafe { entry.set_failure(OUT_PANIC, item, done, &text) }
        }
    }
}

/// What `wait_for_work` found.
enum Work {
    Entry,
    Stop,
    /// `head` is more than a ring ahead of `tail`: the pool never writes that.
    Corrupt,
}

/// Wait until entry `t` is available or the pool stops.
fn wait_for_work(view: &View<'_>, mb: &Mailbox, t: u32) -> Work {
    let hdr = view.header();
    let depth = view.shape().depth as u32;
    // Some(Entry) once `head` moved; Some(Corrupt) if it moved more than a ring ahead.
    let work = || match mb.head.load(Ordering::Acquire).wrapping_sub(t) {
        0 => None,
        q if q > depth => Some(Work::Corrupt),
        _ => Some(Work::Entry),
    };
    // Spin under the crate's wait policy, watching the pool's state too, then park.
    let ready = || match work() {
        Some(w) => Some(w),
        None if hdr.state.load(Ordering::Relaxed) != RUN => Some(match work() {
            Some(w) if hdr.state.load(Ordering::Relaxed) != KILL => w,
            _ => Work::Stop,
        }),
        None => None,
    };
    spin_then(WaitPolicy::process_default(), Cadence::HandOff, key_of(mb), &Deadline::never(), ready, || {
        park_for_work(hdr, mb, work)
    })
}

/// The parking half of [`wait_for_work`]: sleep on the mailbox's doorbell until work comes or
/// the pool stops.
fn park_for_work(hdr: &Header, mb: &Mailbox, work: impl Fn() -> Option<Work>) -> Work {
    loop {
        mb.sleeping.store(1, Ordering::SeqCst);
        let bell = mb.doorbell.load(Ordering::SeqCst);
        if let Some(w) = work() {
            mb.sleeping.store(0, Ordering::Relaxed);
            return w;
        }
        if hdr.state.load(Ordering::SeqCst) != RUN {
            mb.sleeping.store(0, Ordering::Relaxed);
            return Work::Stop;
        }
        futex::wait(&mb.doorbell, bell, Deadline::never(), Some(Duration::from_millis(200)));
        mb.sleeping.store(0, Ordering::Relaxed);
        if let Some(w) = work() {
            return w;
        }
    }
}
