//! `cargo bench --bench ipc [-- FILTER...]`: cross-process benchmarks, one module per area.
//!
//! Every figure prints as one `name: value unit` line (medians of several rounds), next to
//! its floor (the raw OS mechanism doing the same job) measured in the same run, and a
//! `<name>_vs_floor: <x> x` ratio. Python's counterparts live in `benches/python/`.
//!
//! To add an area: write `benches/ipc/<area>.rs` with `pub fn run(h: &mut Harness)` that
//! calls `h.group("<area>")` first and measures through [`util::Harness`], then list it in
//! `GROUPS` below. The whole binary must finish well under 5 minutes.

mod dict;
mod fuzz;
mod numeric;
mod pool;
mod queue;
mod segment;
mod sync;
mod util;
mod wait;

use util::Harness;

/// Every area's entry point, in run order.
const GROUPS: &[fn(&mut Harness)] =
    &[segment::run, sync::run, wait::run, queue::run, dict::run, pool::run, fuzz::run, numeric::run];

fn main() {
    let mut h = Harness::from_args();
    for run in GROUPS {
        run(&mut h);
    }
}
