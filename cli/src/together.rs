//! Child processes started together: each waits at a start gate in shared memory until all
//! of them are ready, so a race measures contention, not fork latency.
//!
//! The children are [`shmkit::process::Process`]es started with [`StartMethod::Fork`]: each
//! is a copy of this single-threaded program at the moment it is spawned, so the work it
//! runs (kept in a thread-local of the spawning thread) and the anonymous segments that work
//! holds are the parent's.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmkit::SharedAtomic;
use shmkit::process::{Process, ProcessBuilder, StartMethod};

use crate::CliError;

/// What every child of one race runs: returns its exit code (0 ok).
pub type Work = Rc<dyn Fn() -> i32>;

thread_local! {
    /// The work of the race being started; a forked child finds it here.
    static WORK: RefCell<Option<Work>> = const { RefCell::new(None) };
}

/// How long a child may run before the race is declared failed.
const LIMIT: Duration = Duration::from_secs(600);

/// Start `processes` children that each run `work`, release them together once all of them
/// are spinning at the start gate, and return the seconds until the last one exits.
pub fn run_together(processes: usize, work: Work) -> Result<f64, CliError> {
    let start = Rc::new(SharedAtomic::<u32>::anonymous(0)?);
    let ready = Rc::new(SharedAtomic::<u32>::anonymous(0)?);
    let (s, r) = (start.clone(), ready.clone());
    let gated: Work = Rc::new(move || {
        r.fetch_add(1, Ordering::AcqRel);
        while s.load(Ordering::Acquire) == 0 {
            std::hint::spin_loop();
        }
        work()
    });
    WORK.with(|w| *w.borrow_mut() = Some(gated));
    let children = spawn_all(processes);
    WORK.with(|w| *w.borrow_mut() = None);
    let mut children = children?;
    // Once all of them are spinning, release them and get off the CPU.
    let deadline = Instant::now() + Duration::from_secs(60);
    while ready.load(Ordering::Acquire) < processes as u32 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(100));
    }
    let t = Instant::now();
    start.store(1, Ordering::Release);
    let mut failed = None;
    for child in &mut children {
        // A child still running after the limit is killed when its handle drops.
        match child.join_timeout(LIMIT) {
            Ok(0) => {}
            Ok(code) => failed = Some(format!("worker {} failed (exit code {code})", child.pid())),
            Err(e) => failed = Some(format!("worker {} failed: {e}", child.pid())),
        }
    }
    let seconds = t.elapsed().as_secs_f64();
    failed.map_or(Ok(seconds), |m| Err(CliError::Failed(m)))
}

fn spawn_all(processes: usize) -> Result<Vec<Process<i32>>, CliError> {
    let mut children = Vec::with_capacity(processes);
    for _ in 0..processes {
        let child = ProcessBuilder::new()
            .start_method(StartMethod::Fork)
            .spawn(child_main, ())
            .map_err(|e| CliError::Failed(format!("cannot start a worker process: {e}")))?;
        children.push(child);
    }
    Ok(children)
}

/// A child's entry: run the work of the race it was forked for.
fn child_main(_: ()) -> i32 {
    WORK.with(|w| w.borrow().clone()).map_or(1, |work| work())
}
