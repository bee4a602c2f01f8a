//! The 2-D heat equation of `heat_diffusion.rs` under MPI: every rank owns a band of rows of
//! a [`HaloArray`]; neighbours' edge rows are read in place from the node's shared window, or
//! arrive as MPI messages from ranks on other nodes. Rank 0 checks the final grid bit for bit
//! against a single-process run of the same kernel (`examples/heat/kernel.rs`) and the job
//! exits non-zero on a mismatch. Prints steps/s.
//!
//! ```sh
//! cargo build --release --features mpi --example mpi_heat
//! mpiexec -n 2 target/release/examples/mpi_heat [grid_size] [steps]            # shared windows
//! SHMKIT_MPI_SPLIT=rank mpiexec -n 2 target/release/examples/mpi_heat 256 50   # messages only
//! mpiexec -n 2 target/release/examples/mpi_heat --bench [grid_size] [steps]    # both, as figures
//! ```
//!
//! `--bench` runs both splits in one job, three rounds each, and prints the medians as
//! `mpi_heat_steps_per_s_shared: <x> steps/s` and `mpi_heat_steps_per_s_messages: <x> steps/s`.

#[path = "heat/kernel.rs"]
mod kernel;

use std::process::ExitCode;
use std::time::Instant;

use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives};
use shmkit::mpi::{HaloArray, MpiError, Node, Split};

const BENCH_ROUNDS: usize = 3;

/// `steps` steps on `node`'s job; returns the final grid on rank 0 and the slowest rank's
/// seconds for the steps (initialisation and the final gather excluded).
fn run(world: &SimpleCommunicator, node: &Node, n: usize, steps: usize) -> Result<(Option<Vec<f64>>, f64), MpiError> {
    let size = node.world_size();
    let counts: Vec<usize> = (0..size).map(|w| kernel::band_rows(n, w, size).len() * n).collect();
    let mut grid = HaloArray::<f64>::new(node, &counts, n)?;
    let rows = grid.range().start / n..grid.range().end / n;
    grid.step().out.copy_from_slice(&kernel::initial_rows(n, rows.start, rows.end));
    grid.fence()?;
    world.barrier();
    let start = Instant::now();
    for _ in 0..steps {
        let s = grid.step();
        kernel::step_band(n, rows.start, s.before, s.own, s.after, s.out);
        grid.fence()?;
    }
    let mine = start.elapsed().as_secs_f64();
    let mut slowest = 0.0f64;
    world.all_reduce_into(&mine, &mut slowest, SystemOperation::max());
    Ok((grid.gather(0)?, slowest))
}

fn describe(node: &Node) -> String {
    let nodes = node.node_count();
    let (mode, how) = if node.world_size() == 1 {
        ("single rank", "no neighbours")
    } else if nodes == 1 {
        ("shared", "halos read in place from the shared window")
    } else if nodes == node.world_size() && nodes > 1 {
        ("messages", "halos as MPI messages")
    } else {
        ("mixed", "shared windows within a node, messages between nodes")
    };
    format!("{} ranks on {nodes} node(s), SHMKIT_MPI_SPLIT={} ({mode}: {how})", node.world_size(), node.split().name())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The normal run: one split (from `SHMKIT_MPI_SPLIT`), checked. Returns whether it matched.
fn check(world: &SimpleCommunicator, n: usize, steps: usize) -> Result<bool, MpiError> {
    let node = Node::new(world)?;
    let about = describe(&node);
    let (grid, secs) = run(world, &node, n, steps)?;
    let Some(grid) = grid else { return Ok(true) };
    println!("mpi heat: {n}x{n} grid, {steps} steps, {about}");
    println!("mpi: {:.1} steps/s", steps as f64 / secs);
    let start = Instant::now();
    let expect = kernel::reference(n, steps);
    println!("single process: {:.1} steps/s", steps as f64 / start.elapsed().as_secs_f64());
    let same = kernel::bitwise_equal(&grid, &expect);
    println!(
        "bit-for-bit equal to the single-process run: {} (fingerprint {:016x}, expected {:016x})",
        if same { "yes" } else { "NO" },
        kernel::fingerprint(&grid),
        kernel::fingerprint(&expect)
    );
    println!("total heat after {steps} steps: {:.6}", expect.iter().sum::<f64>());
    Ok(same)
}

/// `--bench`: both splits in one job, medians of [`BENCH_ROUNDS`], every round checked.
fn bench(world: &SimpleCommunicator, n: usize, steps: usize) -> Result<bool, MpiError> {
    let expect = (world.rank() == 0).then(|| kernel::reference(n, steps));
    let mut ok = true;
    for (split, name) in
        [(Split::Shared, "mpi_heat_steps_per_s_shared"), (Split::Rank, "mpi_heat_steps_per_s_messages")]
    {
        let node = Node::with_split(world, split)?;
        let mut rates = Vec::new();
        for _ in 0..BENCH_ROUNDS {
            let (grid, secs) = run(world, &node, n, steps)?;
            if let (Some(grid), Some(expect)) = (grid, &expect) {
                ok &= kernel::bitwise_equal(&grid, expect);
            }
            rates.push(steps as f64 / secs);
        }
        if world.rank() == 0 {
            println!("{name}: {:.1} steps/s", median(rates));
        }
    }
    if expect.is_some() && ok {
        eprintln!("mpi_heat: every round was bit-for-bit equal to the single-process run");
    }
    Ok(ok)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench_mode = args.iter().any(|a| a == "--bench");
    let nums: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let n = nums.first().copied().unwrap_or(1024).max(3);
    let steps = nums.get(1).copied().unwrap_or(200);

    let Some(universe) = mpi::initialize() else {
        eprintln!("mpi_heat: MPI was already initialised");
        return ExitCode::FAILURE;
    };
    let world = universe.world();
    if n < world.size() as usize {
        eprintln!("mpi_heat: a {n}x{n} grid has fewer rows than the {} ranks; use a larger grid", world.size());
        return ExitCode::FAILURE;
    }
    let result = if bench_mode { bench(&world, n, steps) } else { check(&world, n, steps) };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("MISMATCH: the MPI result differs from the single-process run");
            // Rank 0 alone knows; abort the job so mpiexec reports the failure.
            world.abort(1)
        }
        Err(e) => {
            eprintln!("mpi_heat (rank {}): {e}", world.rank());
            world.abort(2)
        }
    }
}
