//! Fuzz and stress campaigns on the pool: per-input results through crashes and hangs.
//!
//! | figure                                  | what is measured                                                     |
//! |-----------------------------------------|----------------------------------------------------------------------|
//! | `pool_fuzz_execs_per_s_crash_only`      | `map_results_with`, 2 workers, a trivial target, 1% of inputs crash the worker (SIGSEGV): inputs per second, every one accounted for |
//! | `pool_fuzz_execs_per_s`                 | the same with also 0.1% of inputs hanging, cut by a 50 ms timeout     |
//! | `floor_fuzz_hang_bound_execs_per_s`     | the bound the hangs alone set: workers / (hang rate x timeout)        |
//! | `pool_timeout_detect_ms`                | a hung task's error arrives this long after its deadline (median)     |
//!
//! Python's counterparts (pebble's `ProcessPool`, one task per input; `ProcessPoolExecutor`)
//! are in `benches/python/fuzz.py`.

use std::time::{Duration, Instant};

use shmkit::pool::{ItemOptions, Pool, PoolError};

use crate::util::{Harness, median};

const WORKERS: usize = 2;
const TIMEOUT: Duration = Duration::from_millis(50);

pub fn run(h: &mut Harness) {
    h.group("fuzz");
    if h.wants("pool_fuzz_execs_per_s_crash_only") {
        campaign(h, "pool_fuzz_execs_per_s_crash_only", crash_only, 100_000, 0);
    }
    if h.wants_any(&["pool_fuzz_execs_per_s", "floor_fuzz_hang_bound_execs_per_s"]) {
        campaign(h, "pool_fuzz_execs_per_s", crash_and_hang, 50_000, 50);
        let bound = WORKERS as f64 / (0.001 * TIMEOUT.as_secs_f64());
        h.report("floor_fuzz_hang_bound_execs_per_s", bound, "execs/s");
    }
    if h.wants("pool_timeout_detect_ms") {
        detect(h);
    }
}

fn crash() -> u64 {
    // SAFETY: signal and raise have no preconditions; it ends this worker, as a wild pointer would.
    // (Rust's own SIGSEGV handler, for stack overflows, would return from a raised one.)
    unsafe {
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        libc::raise(libc::SIGSEGV);
    }
    0
}

/// 1 input in 100 crashes its worker.
fn crash_only(x: u64) -> u64 {
    if x % 100 == 37 { crash() } else { x.wrapping_mul(0x9e37_79b9_7f4a_7c15) }
}

/// 1 in 100 crashes, 1 in 1,000 hangs.
fn crash_and_hang(x: u64) -> u64 {
    if x % 1000 == 501 {
        loop {
            std::hint::spin_loop();
        }
    }
    crash_only(x)
}

fn campaign(h: &Harness, name: &str, target: fn(u64) -> u64, n: u64, hangs: usize) {
    let pool = Pool::builder().processes(WORKERS).task_timeout(TIMEOUT).build().expect("pool");
    let opts = ItemOptions::new().chunksize(64);
    let mut rates = Vec::new();
    for round in 0..4 {
        let start = Instant::now();
        let out = pool.map_results_with(target, 0..n, opts).expect("campaign");
        let t = start.elapsed();
        let crashes = out.iter().filter(|r| r.as_ref().is_err_and(|e| e.is_crash())).count();
        let timeouts = out.iter().filter(|r| r.as_ref().is_err_and(|e| e.is_timeout())).count();
        assert_eq!((out.len(), crashes, timeouts), (n as usize, n as usize / 100, hangs), "every input once");
        if round > 0 {
            rates.push(n as f64 / t.as_secs_f64());
        }
    }
    h.report(name, median(&mut rates), "execs/s");
}

fn hang(_: u64) -> u64 {
    loop {
        std::hint::spin_loop();
    }
}

fn detect(h: &Harness) {
    let limit = Duration::from_millis(20);
    let pool = Pool::builder().processes(WORKERS).task_timeout(limit).build().expect("pool");
    let mut late = Vec::new();
    for _ in 0..15 {
        let start = Instant::now();
        match pool.apply(hang, 0) {
            Err(PoolError::TaskTimedOut { .. }) => {
                late.push((start.elapsed().saturating_sub(limit)).as_secs_f64() * 1e3)
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
    h.report("pool_timeout_detect_ms", median(&mut late), "ms");
}
