//! Forked children started together: each waits at a start gate in shared memory until all
//! of them are ready, so a race measures contention, not fork latency.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmkit::SharedAtomic;
use shmkit::sys::process::{self as os, ExitStatus};

use super::CliError;

/// Fork `processes` children that each run `work`, release them together once all of them
/// are spinning at the start gate, and return the seconds until the last one exits.
pub fn run_together(processes: usize, work: &dyn Fn() -> i32) -> Result<f64, CliError> {
    let start = SharedAtomic::<u32>::anonymous(0)?;
    let ready = SharedAtomic::<u32>::anonymous(0)?;
    let gated = || -> i32 {
        ready.fetch_add(1, Ordering::AcqRel);
        while start.load(Ordering::Acquire) == 0 {
            std::hint::spin_loop();
        }
        work()
    };
    let mut children = Vec::with_capacity(processes);
    for _ in 0..processes {
        children.push(fork(&gated)?);
    }
    // Once all of them are spinning, release them and get off the CPU.
    let deadline = Instant::now() + Duration::from_secs(60);
    while ready.load(Ordering::Acquire) < processes as u32 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(100));
    }
    let t = Instant::now();
    start.store(1, Ordering::Release);
    wait_all(&children)?;
    Ok(t.elapsed().as_secs_f64())
}

/// Fork a child that runs `work` and exits with its code.
fn fork(work: &dyn Fn() -> i32) -> Result<i32, CliError> {
    // SAFETY: the command line is single-threaded (its progress bar draws only between
    // races, from this thread), so the child inherits no lock held by another thread.
    let pid = unsafe { os::fork() }.map_err(|e| CliError::Failed(format!("fork failed: {e}")))?;
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or(101);
        // Leave the child at once, without running the parent's destructors.
        os::exit_now(code);
    }
    Ok(pid)
}

/// Reap every child; a child that fails or hangs past a generous limit is an error.
fn wait_all(children: &[i32]) -> Result<(), CliError> {
    let limit = Instant::now() + Duration::from_secs(600);
    let mut failed = None;
    for &pid in children {
        loop {
            match os::try_reap(pid) {
                Ok(Some(status)) => {
                    if status != ExitStatus::Code(0) {
                        failed = Some(format!("worker {pid} failed ({status})"));
                    }
                    break;
                }
                Ok(None) if Instant::now() <= limit => std::thread::sleep(Duration::from_micros(200)),
                _ => {
                    for &p in children {
                        // Our own children, not reaped yet: their pids cannot be reused.
                        os::kill_child(p);
                    }
                    return Err(CliError::Failed(format!("worker {pid} did not finish")));
                }
            }
        }
    }
    failed.map_or(Ok(()), |m| Err(CliError::Failed(m)))
}
