//! `shmkit demo`: the classic lost-update race on a shared counter, and its two fixes.
//!
//! P forked processes each add 1 to one shared counter N times, three ways:
//! - **unsynchronized**: a relaxed atomic load, then a separate store — no undefined
//!   behaviour, but two processes that load the same value both store value + 1;
//! - **locked**: `*mutex.lock() += 1` under shmkit's robust process-shared `Mutex`;
//! - **atomic**: one `fetch_add`.

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use shmkit::SharedAtomic;
use shmkit::shared::SharedObject;
use shmkit::sync::Mutex;

use clap::Args;
use serde::Serialize;

use crate::CliError;
use crate::demo_dict::DictReport;
use crate::report::{self, Rate};
use crate::together::run_together;

/// One way of incrementing, run in every child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    Unsynchronized,
    Locked,
    Atomic,
}

/// The outcome of one way.
#[derive(Clone, Copy, Debug)]
struct Outcome {
    final_count: u64,
    seconds: f64,
}

impl Outcome {
    fn per_second(&self, expected: u64) -> f64 {
        expected as f64 / self.seconds.max(1e-9)
    }
}

/// `shmkit demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Processes racing (default: the CPUs available, at least 2).
    #[arg(short, long, value_name = "P", value_parser = clap::value_parser!(u16).range(1..=1024))]
    processes: Option<u16>,
    /// Increments per process.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    increments: u64,
    /// Print JSON (schema 1) instead of tables.
    #[arg(long)]
    json: bool,
}

/// `demo --json`.
#[derive(Serialize)]
struct DemoReport {
    processes: usize,
    increments: u64,
    expected: u64,
    unsynchronized: Rate,
    locked: Rate,
    atomic: Rate,
    dict: DictReport,
}

/// `shmkit demo [--processes P] [--increments N] [--json]`.
pub fn run(args: &DemoArgs) -> Result<(), CliError> {
    let default_p = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 1024);
    let processes = args.processes.map_or(default_p, usize::from);
    let increments = args.increments;
    let json = args.json;
    let expected = processes as u64 * increments;
    // Progress on stderr, between races only (the timed sections stay untouched, and no
    // ticker thread runs in a process that forks); hidden when stderr is not a terminal.
    let bar = indicatif::ProgressBar::new(4);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>24} [{bar:30}] {pos}/{len} races")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let phase = |name: &str| bar.set_message(format!("{processes} x {increments} {name}"));
    phase("unsynchronized");
    let unsync = race(processes, increments, Way::Unsynchronized)?;
    bar.inc(1);
    phase("locked");
    let locked = race(processes, increments, Way::Locked)?;
    bar.inc(1);
    phase("atomic");
    let atomic = race(processes, increments, Way::Atomic)?;
    bar.inc(1);
    phase("dict");
    // The dict section (demo_dict.rs).
    let dict = crate::demo_dict::race(processes, crate::demo_dict::increments_for(increments))?;
    bar.inc(1);
    bar.finish_and_clear();
    if json {
        let way = |o: &Outcome| Rate::of(o.final_count, o.seconds, expected);
        report::print(&DemoReport {
            processes,
            increments,
            expected,
            unsynchronized: way(&unsync),
            locked: way(&locked),
            atomic: way(&atomic),
            dict: dict.report(),
        });
    } else {
        println!("{processes} processes x {increments} increments on one shared counter (expected {expected})\n");
        println!("{:<16} {:>14} {:>8} {:>16}", "way", "final count", "lost %", "increments/s");
        for (name, o) in [("unsynchronized", &unsync), ("locked (Mutex)", &locked), ("atomic fetch_add", &atomic)] {
            let lost = 100.0 * (expected - o.final_count.min(expected)) as f64 / expected as f64;
            println!("{name:<16} {:>14} {:>7.2}% {:>16.0}", o.final_count, lost, o.per_second(expected));
        }
        println!(
            "\nload-then-store loses updates when processes interleave; the robust Mutex and the \
             atomic fetch_add are exact."
        );
        dict.print_table();
    }
    dict.check()?;
    if locked.final_count != expected || atomic.final_count != expected || unsync.final_count > expected {
        return Err(CliError::Failed("a synchronized counter is wrong: this is a bug in shmkit".into()));
    }
    Ok(())
}

/// Fork `processes` children that each increment `increments` times, start them together,
/// and time them until the last one exits.
fn race(processes: usize, increments: u64, way: Way) -> Result<Outcome, CliError> {
    let counter = Rc::new(SharedAtomic::<u64>::anonymous(0)?);
    let locked = Rc::new(LockedCounter::new()?);
    let (c, l) = (counter.clone(), locked.clone());
    let work = move || -> i32 {
        match way {
            Way::Unsynchronized => unsynchronized(&c, increments),
            Way::Atomic => {
                for _ in 0..increments {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
            Way::Locked => {
                if l.run(increments).is_err() {
                    return 1;
                }
            }
        }
        0
    };
    let seconds = run_together(processes, Rc::new(work))?;
    let final_count = match way {
        Way::Locked => locked.get()?,
        _ => counter.load(Ordering::SeqCst),
    };
    Ok(Outcome { final_count, seconds })
}

fn unsynchronized(counter: &AtomicU64, increments: u64) {
    for _ in 0..increments {
        // Two separate atomic operations: well defined, but not a read-modify-write.
        let v = counter.load(Ordering::Relaxed);
        std::hint::black_box(&v);
        counter.store(v + 1, Ordering::Relaxed);
    }
}

/// The locked counter: a robust process-shared `Mutex<u64>` alone in an anonymous segment.
struct LockedCounter(SharedObject<Mutex<u64>>);

impl LockedCounter {
    fn new() -> Result<Self, CliError> {
        Ok(LockedCounter(SharedObject::anonymous(|_| {})?))
    }

    fn run(&self, increments: u64) -> Result<(), CliError> {
        for _ in 0..increments {
            *self.0.lock().map_err(|e| CliError::Failed(e.to_string()))? += 1;
        }
        Ok(())
    }

    fn get(&self) -> Result<u64, CliError> {
        Ok(*self.0.lock().map_err(|e| CliError::Failed(e.to_string()))?)
    }
}
