//! The classic lost-update race, in library form: P pool workers each add 1 to shared
//! counters N times — with a separate load and store (updates are lost, without undefined
//! behaviour), under a robust process-shared `Mutex`, and with an atomic `fetch_add`.
//!
//! ```text
//! cargo run --release --example counter_race -- [processes] [increments]
//! ```
//! (`shmkit demo` is the same race as a command, with a dict section and `--json`.)

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use shmkit::pool::Pool;
use shmkit::{Mutex, SharedObject, ShmSafe};

#[repr(C)]
struct Counters {
    racy: AtomicU64,
    locked: Mutex<u64>,
    atomic: AtomicU64,
}

// SAFETY: #[repr(C)] and made only of ShmSafe fields (atomics and a shmkit Mutex).
unsafe impl ShmSafe for Counters {}

/// Created before the pool: every worker is a fork of this process and maps it too.
static COUNTERS: OnceLock<SharedObject<Counters>> = OnceLock::new();

fn racy(n: u64) -> u64 {
    let c = COUNTERS.get().expect("created before the pool");
    for _ in 0..n {
        let v = c.racy.load(Relaxed); // read ...
        std::hint::black_box(v);
        c.racy.store(v + 1, Relaxed); // ... write back: another process's update in between is lost
    }
    n
}

fn locked(n: u64) -> u64 {
    let c = COUNTERS.get().expect("created before the pool");
    for _ in 0..n {
        *c.locked.lock().expect("robust lock") += 1;
    }
    n
}

fn atomic(n: u64) -> u64 {
    let c = COUNTERS.get().expect("created before the pool");
    for _ in 0..n {
        c.atomic.fetch_add(1, Relaxed);
    }
    n
}

/// A way of incrementing: its name and the task each worker runs.
type Way = (&'static str, fn(u64) -> u64);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let processes = args.first().copied().unwrap_or(2).max(1) as usize;
    let increments = args.get(1).copied().unwrap_or(10_000_000);
    COUNTERS.set(SharedObject::anonymous(|_| {})?).map_err(|_| "counters set twice")?;
    let pool = Pool::new(processes)?;
    let expected = processes as u64 * increments;
    println!("{processes} processes x {increments} increments (expected {expected})\n");
    println!("{:<16} {:>12} {:>8} {:>14}", "way", "final", "lost %", "increments/s");
    let c = COUNTERS.get().ok_or("counters missing")?;
    let ways: [Way; 3] = [("unsynchronized", racy), ("locked (Mutex)", locked), ("atomic", atomic)];
    let mut exact = true;
    for (name, f) in ways {
        let t = Instant::now();
        pool.map(f, vec![increments; processes])?;
        let secs = t.elapsed().as_secs_f64();
        let got = match name {
            "unsynchronized" => c.racy.load(Relaxed),
            "atomic" => c.atomic.load(Relaxed),
            _ => *c.locked.lock().map_err(|e| e.to_string())?,
        };
        let lost = 100.0 * (expected - got.min(expected)) as f64 / expected as f64;
        println!("{name:<16} {got:>12} {lost:>7.2}% {:>14.0}", expected as f64 / secs);
        exact &= name == "unsynchronized" || got == expected;
    }
    if !exact {
        return Err("a synchronized counter is wrong".into());
    }
    Ok(())
}
