//! 2-D heat equation on a shared `[n, n]` grid with a process pool: every step, each worker
//! updates a band of rows of the next grid as ndarray code over views of the shared memory,
//! reading its halo rows from the current grid, which travels to it as an `ArrayRef` in the
//! step's context together with the diffusion number. The pool call is the barrier between
//! steps. The result is checked bit for bit against a single-process run, and the steps/s
//! of 1 and N workers are printed.
//!
//! ```sh
//! cargo run --release --features ndarray --example heat_diffusion -- [grid_size] [steps] [workers]
//! ```

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use shmkit::ndarray::Ix2;
use shmkit::pool::{ArrayRef, Pool};
use shmkit::{ClaimMut, Rows, SharedArray};

#[path = "heat/kernel.rs"]
pub mod kernel;

pub use kernel::reference;

/// What every band of a step gets: the coefficient and the grid to read.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Step {
    alpha: f64,
    src: ArrayRef<f64>,
}

/// One step of the rows `out` holds (from row `r0`), in some worker.
fn step_band(r0: usize, out: &mut ClaimMut<'_, f64>, ctx: &Step) {
    let src = ctx.src.resolve().expect("open the current grid");
    let n = src.shape().rows();
    let h0 = r0.saturating_sub(1);
    let input = src.claim(Rows(h0..(r0 + out.shape().rows() + 1).min(n))).expect("claim band and halos");
    let (input, out) = (input.view::<Ix2>().expect("2-D"), out.view_mut::<Ix2>().expect("2-D"));
    kernel::step_band_nd(ctx.alpha, n, r0, h0, input, out);
}

pub fn run_pool(workers: usize, n: usize, steps: usize) -> (Vec<f64>, Duration) {
    run_pool_with_progress(workers, n, steps, |_| {})
}

/// [`run_pool`], calling `on_step(steps_done)` after every step.
pub fn run_pool_with_progress(
    workers: usize,
    n: usize,
    steps: usize,
    mut on_step: impl FnMut(u64),
) -> (Vec<f64>, Duration) {
    let pool = Pool::new(workers).expect("start pool");
    let grids = [0, 1].map(|_| SharedArray::<f64>::create(None, [n, n]).expect("create grid"));
    grids[0].copy_from_slice(0, &kernel::initial(n)).unwrap();
    let refs = [0, 1].map(|g| ArrayRef::new(&grids[g]).unwrap());
    let start = Instant::now();
    for s in 0..steps {
        let ctx = Step { alpha: kernel::ALPHA, src: refs[s % 2] };
        pool.map_chunks_mut_with(&grids[(s + 1) % 2], n.div_ceil(workers), &ctx, step_band).expect("step");
        on_step(s as u64 + 1);
    }
    let elapsed = start.elapsed();
    (grids[steps % 2].copy_to_vec().unwrap(), elapsed)
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let n = args.first().copied().unwrap_or(1024).max(3);
    let steps = args.get(1).copied().unwrap_or(200);
    let workers = args.get(2).copied().unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |p| p.get()));
    println!("heat diffusion: {n}x{n} grid, {steps} steps");

    let start = Instant::now();
    let expect = reference(n, steps);
    println!("single process (no pool): {:.1} steps/s", steps as f64 / start.elapsed().as_secs_f64());

    let mut ok = true;
    for w in [1, workers.max(1)] {
        // A progress bar on a terminal; hidden when stderr is not one (CI, pipes).
        let bar = ProgressBar::new(steps as u64).with_message(format!("{w} worker(s)"));
        bar.set_style(
            ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} steps, {per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let (got, t) = run_pool_with_progress(w, n, steps, |done| bar.set_position(done));
        bar.finish_and_clear();
        let same = kernel::bitwise_equal(&got, &expect);
        println!(
            "pool, {w} worker{}: {:.1} steps/s, bit-for-bit equal to the single-process run: {}",
            if w == 1 { "" } else { "s" },
            steps as f64 / t.as_secs_f64(),
            if same { "yes" } else { "NO" }
        );
        ok &= same;
        if w == workers {
            break;
        }
    }
    let total: f64 = expect.iter().sum();
    println!("total heat after {steps} steps: {total:.6}");
    if !ok {
        eprintln!("MISMATCH: the pool's result differs from the single-process run");
        std::process::exit(1);
    }
}
