//! 2-D heat equation on a shared grid: workers own bands of rows, read their neighbours'
//! halo rows straight from the shared grid, and meet at a process-shared `Barrier` after
//! every step. The result is checked bit for bit against a single-process run, and the
//! steps/s of 1 and N workers are printed.
//!
//! ```sh
//! cargo run --release --example heat_diffusion -- [grid_size] [steps] [workers]
//! ```

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use shmkit::pool::Pool;
use shmkit::shared::SharedObject;
use shmkit::sync::Barrier;
use shmkit::{SharedArray, SharedAtomic};

#[path = "heat/kernel.rs"]
mod kernel;

pub use kernel::reference;

/// Everything one worker needs: plain data, so it crosses as a task argument.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Band {
    n: u64,
    steps: u64,
    r0: u64,
    r1: u64,
    grids: [[u8; 64]; 2],
    barrier: [u8; 64],
    /// A `SharedAtomic<u64>` the first band's worker bumps after each step (progress).
    progress: [u8; 64],
}

fn name_of(b: &[u8; 64]) -> &str {
    std::str::from_utf8(&b[..b.iter().position(|&c| c == 0).unwrap_or(64)]).unwrap_or("")
}

fn name_arg(name: &str) -> [u8; 64] {
    let mut b = [0u8; 64];
    b[..name.len()].copy_from_slice(name.as_bytes());
    b
}

/// A worker's whole run: `steps` steps of its band, a barrier after each.
fn run_band(band: Band) -> u64 {
    let (n, r0, r1) = (band.n as usize, band.r0 as usize, band.r1 as usize);
    let grids = [
        SharedArray::<f64>::open(name_of(&band.grids[0])).expect("open grid 0"),
        SharedArray::<f64>::open(name_of(&band.grids[1])).expect("open grid 1"),
    ];
    let barrier = SharedObject::<Barrier>::open(name_of(&band.barrier)).expect("open barrier");
    let progress = (r0 == 0).then(|| SharedAtomic::<u64>::open(name_of(&band.progress)).expect("open progress"));
    let (h0, h1) = (r0.saturating_sub(1), (r1 + 1).min(n));
    for step in 0..band.steps as usize {
        let (src, dst) = (&grids[step % 2], &grids[(step + 1) % 2]);
        {
            // Our rows of the next grid, exclusively; our rows plus halos of the current one, shared.
            let mut out = dst.claim_mut(r0 * n..r1 * n).expect("claim own band");
            let input = src.claim(h0 * n..h1 * n).expect("claim band and halos");
            let (above, rest) = input.split_at((r0 - h0) * n);
            let (band, below) = rest.split_at((r1 - r0) * n);
            kernel::step_band(n, r0, above, band, below, &mut out);
        }
        barrier.wait().expect("barrier broken: another worker died or timed out");
        if let Some(p) = &progress {
            p.store(step as u64 + 1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    band.steps
}

pub fn run_pool(workers: usize, n: usize, steps: usize) -> (Vec<f64>, Duration) {
    run_pool_with_progress(workers, n, steps, |_| {})
}

/// [`run_pool`], calling `on_step(steps_done)` while the workers run.
pub fn run_pool_with_progress(
    workers: usize,
    n: usize,
    steps: usize,
    mut on_step: impl FnMut(u64),
) -> (Vec<f64>, Duration) {
    let pool = Pool::new(workers).expect("start pool");
    let grids = [SharedArray::<f64>::create(None, n * n).unwrap(), SharedArray::<f64>::create(None, n * n).unwrap()];
    grids[0].copy_from_slice(0, &kernel::initial(n)).unwrap();
    let progress = SharedAtomic::<u64>::create(None, 0).unwrap();
    let barrier =
        SharedObject::<Barrier>::create(None, |b| *b = Barrier::with_timeout(workers as u16, Duration::from_secs(60)))
            .unwrap();
    let names = [name_arg(grids[0].name().unwrap()), name_arg(grids[1].name().unwrap())];
    let start = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let band = Band {
                n: n as u64,
                steps: steps as u64,
                r0: (w * n / workers) as u64,
                r1: ((w + 1) * n / workers) as u64,
                grids: names,
                barrier: name_arg(barrier.name().unwrap()),
                progress: name_arg(progress.name().unwrap()),
            };
            pool.apply_async(run_band, band).expect("submit band")
        })
        .collect();
    while !handles.iter().all(|h| h.ready()) {
        on_step(progress.load(std::sync::atomic::Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(20));
    }
    on_step(steps as u64);
    for h in handles {
        h.get().expect("band failed");
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
    let t = start.elapsed();
    println!("single process (no pool): {:.1} steps/s", steps as f64 / t.as_secs_f64());

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
