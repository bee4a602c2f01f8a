//! `shmkit demo`, dict section: Python's `Manager().dict()` race, and its fix.
//!
//! P forked processes each add 1 to one key of a [`SharedDict`] N times, two ways:
//! - **unsynchronized**: `let v = d.get(k); d.insert(k, v + 1)` — each call is atomic, the
//!   pair is not, so two processes that read the same value both write value + 1 (Python's
//!   `d[k] += 1` on a manager dict, which loses about half of them with two processes);
//! - **locked**: `d.update(k, 0, |v| v + 1)`, one atomic read-modify-write under the key's
//!   stripe lock.

use std::rc::Rc;

use shmkit::ManagerError;
use shmkit::manager::SharedDict;

use serde::Serialize;

use crate::CliError;
use crate::report::Rate;
use crate::together::run_together;

const KEY: &str = "count";

/// The dict's N: the counter's, capped at one million (a dict update costs a lock and a
/// lookup, several times a `fetch_add`).
pub fn increments_for(counter_increments: u64) -> u64 {
    counter_increments.min(1_000_000)
}

#[derive(Clone, Copy, Debug)]
struct Outcome {
    final_count: u64,
    seconds: f64,
}

/// The `"dict"` member of `demo --json`.
#[derive(Serialize, Debug)]
pub struct DictReport {
    increments: u64,
    expected: u64,
    unsynchronized: Rate,
    locked: Rate,
}

/// Both ways, measured.
pub struct DictRace {
    processes: usize,
    increments: u64,
    unsynchronized: Outcome,
    locked: Outcome,
}

/// Run both ways with `processes` children doing `increments` each.
pub fn race(processes: usize, increments: u64) -> Result<DictRace, CliError> {
    Ok(DictRace {
        processes,
        increments,
        unsynchronized: run(processes, increments, false)?,
        locked: run(processes, increments, true)?,
    })
}

fn run(processes: usize, increments: u64, locked: bool) -> Result<Outcome, CliError> {
    let d = Rc::new(SharedDict::<str, u64>::anonymous(16)?);
    d.insert(KEY, 0)?;
    let shared = d.clone();
    let work = move || -> i32 {
        let r = if locked { increment_locked(&shared, increments) } else { increment_racy(&shared, increments) };
        i32::from(r.is_err())
    };
    let seconds = run_together(processes, Rc::new(work))?;
    Ok(Outcome { final_count: d.get(KEY)?.unwrap_or(0), seconds })
}

fn increment_racy(d: &SharedDict<str, u64>, increments: u64) -> Result<(), ManagerError> {
    for _ in 0..increments {
        let v = d.get(KEY)?.unwrap_or(0);
        d.insert(KEY, v + 1)?;
    }
    Ok(())
}

fn increment_locked(d: &SharedDict<str, u64>, increments: u64) -> Result<(), ManagerError> {
    for _ in 0..increments {
        d.update(KEY, 0, |v| v + 1)?;
    }
    Ok(())
}

impl DictRace {
    fn expected(&self) -> u64 {
        self.processes as u64 * self.increments
    }

    fn per_second(&self, o: &Outcome) -> f64 {
        self.expected() as f64 / o.seconds.max(1e-9)
    }

    /// The `"dict"` member of `demo --json`.
    pub fn report(&self) -> DictReport {
        let rate = |o: &Outcome| Rate::of(o.final_count, o.seconds, self.expected());
        DictReport {
            increments: self.increments,
            expected: self.expected(),
            unsynchronized: rate(&self.unsynchronized),
            locked: rate(&self.locked),
        }
    }

    /// The human table.
    pub fn print_table(&self) {
        let expected = self.expected();
        println!(
            "\n{} processes x {} updates of one key in a SharedDict (expected {expected})\n",
            self.processes, self.increments
        );
        println!("{:<16} {:>14} {:>8} {:>16}", "way", "final count", "lost %", "updates/s");
        for (name, o) in [("get + insert", &self.unsynchronized), ("update()", &self.locked)] {
            let lost = 100.0 * (expected - o.final_count.min(expected)) as f64 / expected as f64;
            println!("{name:<16} {:>14} {:>7.2}% {:>16.0}", o.final_count, lost, self.per_second(o));
        }
        println!(
            "\nget-then-insert loses updates like `d[k] += 1` on a Python Manager dict; update() is one \
             atomic read-modify-write under the key's stripe lock."
        );
    }

    /// The locked count must be exact, the racy one never more than expected.
    pub fn check(&self) -> Result<(), CliError> {
        if self.locked.final_count != self.expected() || self.unsynchronized.final_count > self.expected() {
            return Err(CliError::Failed("the SharedDict count is wrong: this is a bug in shmkit".into()));
        }
        Ok(())
    }
}
