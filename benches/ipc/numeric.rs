//! Numeric work (issue 14): ndarray kernels, serde tasks, the 2-D heat example.
//!
//! | figure                        | what                                                                  |
//! |-------------------------------|-----------------------------------------------------------------------|
//! | `ndarray_heat_step_vs_slice`  | one heat step of a 1024² grid over ndarray views / the slice kernel (goal ≤ 1.05) |
//! | `pool_map_serde_small`        | `Pool::map_serde` of a struct {String, Vec<f64> of 8} over `&inputs` (kept, as Python's list is), 2 workers, 16 KiB messages: tasks/s |
//! | `pool_heat_2d_steps_per_s`    | `examples/heat_diffusion` (2 workers, 512², a pool call per step)     |
//! | `single_heat_2d_steps_per_s`  | the same grid stepped in one process (the slice kernel)               |
//!
//! The ndarray figures need `--features ndarray`, the serde one `--features serde`
//! (`benches/compare.sh` passes both); without them they are skipped.

#[cfg(feature = "ndarray")]
#[allow(dead_code)]
#[path = "../../examples/heat_diffusion.rs"]
mod heat;

use crate::util::Harness;
#[cfg(any(feature = "ndarray", feature = "serde"))]
use crate::util::median;

pub fn run(h: &mut Harness) {
    h.group("numeric");
    #[cfg(feature = "ndarray")]
    {
        if h.wants("ndarray_heat_step_vs_slice") {
            step_vs_slice(h);
        }
        if h.wants_any(&["pool_heat_2d_steps_per_s", "single_heat_2d_steps_per_s"]) {
            heat_2d(h);
        }
    }
    #[cfg(feature = "serde")]
    if h.wants("pool_map_serde_small") {
        serde_small(h);
    }
    let _ = h;
}

#[cfg(feature = "ndarray")]
fn step_vs_slice(h: &Harness) {
    use shmkit::ndarray::{ArrayView2, ArrayViewMut2};
    use std::time::Instant;
    let n = 1024;
    let a = heat::kernel::initial(n);
    let mut b = vec![0.0; n * n];
    let mut c = vec![0.0; n * n];
    let (mut slice, mut nd) = (Vec::new(), Vec::new());
    for _ in 0..9 {
        let t = Instant::now();
        for _ in 0..5 {
            heat::kernel::step_band(n, 0, &[], &a, &[], &mut b);
        }
        slice.push(t.elapsed().as_secs_f64() / 5.0);
        let t = Instant::now();
        for _ in 0..5 {
            let input = ArrayView2::from_shape((n, n), &a).expect("shape");
            let out = ArrayViewMut2::from_shape((n, n), &mut c).expect("shape");
            heat::kernel::step_band_nd(heat::kernel::ALPHA, n, 0, 0, input, out);
        }
        nd.push(t.elapsed().as_secs_f64() / 5.0);
    }
    assert!(heat::kernel::bitwise_equal(&b, &c), "the two kernels differ");
    let (s, v) = (median(&mut slice), median(&mut nd));
    h.report("heat_step_1024_slice", s * 1e3, "ms");
    h.report("heat_step_1024_ndarray", v * 1e3, "ms");
    h.ratio("ndarray_heat_step_vs_slice", Some(v), Some(s));
}

#[cfg(feature = "ndarray")]
fn heat_2d(h: &Harness) {
    use std::time::Instant;
    // 200 steps (about 50 ms a run): with 50, a run measured the fresh pool's first page
    // faults as much as its stepping, and some runs went at half speed (table medians from
    // 0.6x to 1.55x on one machine).
    let (n, steps) = (512, 200);
    let (mut pool, mut single) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        let expect = heat::reference(n, steps);
        single.push(steps as f64 / t.elapsed().as_secs_f64());
        let (got, t) = heat::run_pool(2, n, steps);
        assert!(heat::kernel::bitwise_equal(&got, &expect), "pool result differs");
        pool.push(steps as f64 / t.as_secs_f64());
    }
    let (p, s) = (median(&mut pool), median(&mut single));
    h.report("pool_heat_2d_steps_per_s", p, "steps/s");
    h.report("single_heat_2d_steps_per_s", s, "steps/s");
    h.ratio("pool_heat_2d_vs_single", Some(p), Some(s));
}

#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize)]
struct Small {
    name: String,
    xs: Vec<f64>,
}

#[cfg(feature = "serde")]
fn norm(s: Small) -> (String, f64) {
    (s.name, s.xs.iter().map(|x| x * x).sum())
}

#[cfg(feature = "serde")]
fn serde_small(h: &Harness) {
    use shmkit::pool::Pool;
    use std::time::Instant;
    const N: usize = 200_000;
    let items = || (0..N).map(|i| Small { name: format!("item{i}"), xs: vec![i as f64; 8] });
    // 16 KiB messages: about 200 of these items per message (1 KiB holds 12).
    let pool = Pool::builder().processes(2).message_size(16 << 10).build().expect("pool");
    let _ = pool.map_serde(norm, items().take(N / 4)).expect("warm-up");
    let mut rates = Vec::new();
    for _ in 0..7 {
        let input: Vec<Small> = items().collect();
        let start = Instant::now();
        // Borrowed: the inputs stay the caller's, as Python's list does across `pool.map`
        // (both are freed after the clock stops).
        let out = pool.map_serde(norm, &input).expect("map");
        rates.push(N as f64 / start.elapsed().as_secs_f64());
        assert_eq!(out.len(), N);
        drop(input);
    }
    h.report("pool_map_serde_small", median(&mut rates), "tasks/s");
}
