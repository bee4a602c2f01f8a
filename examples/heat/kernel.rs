//! The 2-D heat kernel, shared by the examples that run it (`#[path = "heat/kernel.rs"] mod kernel;`),
//! so that every way of running it — one process, pool workers, MPI ranks in shared windows
//! or exchanging messages — computes the same bits.
//!
//! # The problem, exactly
//!
//! - Grid: `n × n` `f64`, row-major (`grid[r * n + c]`), `n ≥ 3`.
//! - Initial condition ([`initial_rows`]): row 0 (the top edge) is `100.0`; the block of
//!   rows `n/3 .. n/2` and columns `n/4 .. n/3` is `500.0`; everything else `0.0`.
//! - Boundary: Dirichlet — rows `0` and `n-1` and columns `0` and `n-1` keep their value.
//! - Step (explicit Euler, 5-point Laplacian, `ALPHA = 0.2`), for every interior cell, with
//!   exactly this order of floating-point operations (no FMA, left to right):
//!
//!   ```text
//!   lap = up + down + left + right - 4.0 * u      // ((((up + down) + left) + right) - (4.0 * u))
//!   new = u + ALPHA * lap
//!   ```
//!
//! Each new cell depends only on the previous grid, so any split into bands of rows gives the
//! same bits as the single-process [`reference`], provided every band computes through
//! [`step_band`] (or the same expression).
#![allow(dead_code)] // each example uses part of it

/// Diffusion number `dt · κ / dx²` (stable for ≤ 0.25).
pub const ALPHA: f64 = 0.2;

/// Value of cell `(r, c)` of the initial `n × n` grid.
pub fn initial_value(n: usize, r: usize, c: usize) -> f64 {
    if r == 0 {
        100.0 // a hot top edge
    } else if (n / 3..n / 2).contains(&r) && (n / 4..n / 3).contains(&c) {
        500.0 // and a hot block
    } else {
        0.0
    }
}

/// Rows `r0..r1` of the initial grid.
pub fn initial_rows(n: usize, r0: usize, r1: usize) -> Vec<f64> {
    (r0..r1).flat_map(|r| (0..n).map(move |c| initial_value(n, r, c))).collect()
}

/// The whole initial grid.
pub fn initial(n: usize) -> Vec<f64> {
    initial_rows(n, 0, n)
}

/// One step for the band of rows `r0 .. r0 + band.len() / n`: `above` is row `r0 - 1` of the
/// current grid (empty when `r0 == 0`), `band` the band's rows, `below` the row after the band
/// (empty when the band ends at row `n`); `out` receives the band's rows of the next grid.
pub fn step_band(n: usize, r0: usize, above: &[f64], band: &[f64], below: &[f64], out: &mut [f64]) {
    let rows = band.len() / n;
    assert!(band.len() == rows * n && out.len() == band.len(), "band and out must be whole rows of {n}");
    assert!(above.len() == if r0 == 0 { 0 } else { n }, "above must be one row, or empty at the top");
    assert!(below.len() == if r0 + rows == n { 0 } else { n }, "below must be one row, or empty at the bottom");
    for i in 0..rows {
        let r = r0 + i;
        let cur = &band[i * n..(i + 1) * n];
        let dst = &mut out[i * n..(i + 1) * n];
        if r == 0 || r == n - 1 {
            dst.copy_from_slice(cur);
            continue;
        }
        let up = if i == 0 { above } else { &band[(i - 1) * n..i * n] };
        let down = if i + 1 == rows { below } else { &band[(i + 1) * n..(i + 2) * n] };
        step_row(up, cur, down, dst);
    }
}

/// One interior row: `dst[c]` from `cur[c]` and its four neighbours; the end cells copy through.
#[inline]
fn step_row(up: &[f64], cur: &[f64], down: &[f64], dst: &mut [f64]) {
    let n = cur.len();
    let (up, down, dst) = (&up[..n], &down[..n], &mut dst[..n]);
    dst[0] = cur[0];
    dst[n - 1] = cur[n - 1];
    for c in 1..n - 1 {
        let u = cur[c];
        let lap = up[c] + down[c] + cur[c - 1] + cur[c + 1] - 4.0 * u;
        dst[c] = u + ALPHA * lap;
    }
}

/// `steps` steps of the whole grid in one process: the result every other run must match.
pub fn reference(n: usize, steps: usize) -> Vec<f64> {
    let (mut a, mut b) = (initial(n), vec![0.0; n * n]);
    for _ in 0..steps {
        step_band(n, 0, &[], &a, &[], &mut b);
        std::mem::swap(&mut a, &mut b);
    }
    a
}

/// Rows of band `w` of `workers` (the same split as `heat_diffusion`): `w*n/workers .. (w+1)*n/workers`.
pub fn band_rows(n: usize, w: usize, workers: usize) -> std::ops::Range<usize> {
    w * n / workers..(w + 1) * n / workers
}

/// Whether two grids are equal bit for bit (`-0.0 != 0.0`, NaN payloads compared).
pub fn bitwise_equal(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// FNV-1a over the bits of every cell: a fingerprint to compare runs by eye.
pub fn fingerprint(grid: &[f64]) -> u64 {
    grid.iter().fold(0xcbf2_9ce4_8422_2325, |h, x| (h ^ x.to_bits()).wrapping_mul(0x0100_0000_01b3))
}

/// [`step_band`] written as ndarray code over 2-D views, with the diffusion number as a
/// parameter: the same floating-point operations in the same order, so the same bits.
/// `input` holds grid rows `h0 ..` (the band and its halo rows: `h0` is `r0 - 1`, or `0` at
/// the top), `out` the band's rows `r0 ..` of the next grid.
#[cfg(feature = "ndarray")]
pub fn step_band_nd(
    alpha: f64,
    n: usize,
    r0: usize,
    h0: usize,
    input: shmkit::ndarray::ArrayView2<'_, f64>,
    mut out: shmkit::ndarray::ArrayViewMut2<'_, f64>,
) {
    use shmkit::ndarray::{Zip, s};
    let (rows, off) = (out.nrows(), r0 - h0);
    // Boundary rows copy through; so do the end columns of every row.
    for i in 0..rows {
        if r0 + i == 0 || r0 + i == n - 1 {
            out.row_mut(i).assign(&input.row(off + i));
        }
        out[[i, 0]] = input[[off + i, 0]];
        out[[i, n - 1]] = input[[off + i, n - 1]];
    }
    // Interior rows of the band, `lo .. hi` in `out`, `off + lo .. off + hi` in `input`.
    let lo = usize::from(r0 == 0);
    let hi = if r0 + rows == n { rows - 1 } else { rows };
    if lo >= hi {
        return;
    }
    let (a, b) = (off + lo, off + hi);
    Zip::from(out.slice_mut(s![lo..hi, 1..n - 1]))
        .and(input.slice(s![a - 1..b - 1, 1..n - 1]))
        .and(input.slice(s![a + 1..b + 1, 1..n - 1]))
        .and(input.slice(s![a..b, 0..n - 2]))
        .and(input.slice(s![a..b, 2..n]))
        .and(input.slice(s![a..b, 1..n - 1]))
        .for_each(|dst, &up, &down, &left, &right, &u| {
            let lap = up + down + left + right - 4.0 * u;
            *dst = u + alpha * lap;
        });
}
