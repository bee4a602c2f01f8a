//! The worker process: run the initializer, then take entries from its mailbox in order,
//! spinning briefly and then parking on a futex when idle.

use std::cell::RefCell;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::layout::{KILL, Mailbox, OUT_ERROR, OUT_OK, OUT_PANIC, RUN, View, write_text};
use super::task::{InitTramp, Tramp};
use crate::segment::Segment;
use crate::sys::{Deadline, futex};

/// Exit code of a worker whose initializer panicked.
pub(crate) const EXIT_INIT_FAILED: i32 = 120;

/// How long an idle worker spins before parking.
const SPIN: Duration = Duration::from_micros(50);

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Capture panic messages (with their location) instead of printing them: the pool hands
/// them to the caller.
fn install_panic_capture() {
    std::panic::set_hook(Box::new(|info| {
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
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(text));
    }));
}

fn take_panic(payload: &(dyn std::any::Any + Send)) -> String {
    LAST_PANIC.with(|p| p.borrow_mut().take()).unwrap_or_else(|| crate::process::panic_message(payload))
}

/// Entry point of a worker process (`arg` = its mailbox index).
pub(crate) fn worker_main(seg: &Segment, index: u64, _fds: &[RawFd]) -> i32 {
    let view = View::new(seg);
    let w = index as usize;
    let mb = view.mailbox(w);
    let hdr = view.header();
    install_panic_capture();
    if hdr.init_tramp != 0 {
        let len = (hdr.init_arg_len as usize).min(hdr.init_arg.len());
        let args = &hdr.init_arg[..len];
        // SAFETY: `init_tramp`/`init_fn` were written by the pool from an InitTramp instance
        // and a matching fn item of this binary image, before this process was forked.
        let run = || unsafe {
            let tramp = std::mem::transmute::<usize, InitTramp>(hdr.init_tramp as usize);
            tramp(hdr.init_fn, args)
        };
        if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
            let text = take_panic(payload.as_ref());
            write_text(view.init_error_area(w), 60, &mb.init_error_len, &text);
            return EXIT_INIT_FAILED;
        }
    }
    let max_tasks = hdr.max_tasks;
    let mut done: u64 = 0;
    loop {
        let t = mb.tail.load(Ordering::Relaxed);
        if !wait_for_work(&view, mb, t) {
            return 0;
        }
        run_entry(&view, w, mb, t);
        mb.tail.store(t.wrapping_add(1), Ordering::SeqCst);
        if hdr.sleepers.load(Ordering::SeqCst) != 0 {
            hdr.completions.fetch_add(1, Ordering::SeqCst);
            futex::wake_all(&hdr.completions);
        }
        done += 1;
        if max_tasks != 0 && done >= max_tasks {
            return 0; // the manager starts a fresh worker in this mailbox
        }
    }
}

fn run_entry(view: &View<'_>, w: usize, mb: &Mailbox, t: u32) {
    let entry = view.entry(w, t);
    mb.running.store(t.wrapping_add(1), Ordering::SeqCst);
    let h = entry.head;
    h.died_pid.store(std::process::id(), Ordering::Relaxed);
    let (tramp, func) = (h.tramp.load(Ordering::Relaxed), h.func.load(Ordering::Relaxed));
    let (count, arg_len) = (h.count.load(Ordering::Relaxed), h.arg_len.load(Ordering::Relaxed) as usize);
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
    // SAFETY: `tramp` and `func` were written by the pool from a `Tramp` instance and the
    // matching user fn item, both of this binary image, which this process shares.
    let call = || unsafe {
        let tramp = std::mem::transmute::<usize, Tramp>(tramp as usize);
        tramp(func, args, count, out)
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(call));
    match outcome {
        Ok(Ok(len)) => {
            h.res_len.store(len as u32, Ordering::Relaxed);
            h.outcome.store(OUT_OK, Ordering::Relaxed);
        }
        // SAFETY (both arms): this worker owns the entry's result area (see above).
        Ok(Err(text)) => unsafe { entry.set_message(OUT_ERROR, &text) },
        Err(payload) => {
            let text = take_panic(payload.as_ref());
            // SAFETY: as above.
            unsafe { entry.set_message(OUT_PANIC, &text) }
        }
    }
}

/// Wait until entry `t` is available (true) or the pool stops (false).
fn wait_for_work(view: &View<'_>, mb: &Mailbox, t: u32) -> bool {
    let hdr = view.header();
    let has_work = || mb.head.load(Ordering::Acquire) != t;
    if has_work() {
        return true;
    }
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        for _ in 0..64 {
            if has_work() {
                return true;
            }
            std::hint::spin_loop();
        }
        spins += 1;
        if hdr.state.load(Ordering::Relaxed) != RUN {
            return has_work() && hdr.state.load(Ordering::Relaxed) != KILL;
        }
        if spins & 15 == 0 && start.elapsed() > SPIN {
            break;
        }
    }
    loop {
        mb.sleeping.store(1, Ordering::SeqCst);
        let bell = mb.doorbell.load(Ordering::SeqCst);
        if has_work() {
            mb.sleeping.store(0, Ordering::Relaxed);
            return true;
        }
        if hdr.state.load(Ordering::SeqCst) != RUN {
            mb.sleeping.store(0, Ordering::Relaxed);
            return false;
        }
        futex::wait(&mb.doorbell, bell, Deadline::never(), Some(Duration::from_millis(200)));
        mb.sleeping.store(0, Ordering::Relaxed);
        if has_work() {
            return true;
        }
    }
}
