//! The heat-diffusion example, small: bands of rows computed over ndarray views in pool
//! workers, a pool call per step, must give the single-process result bit for bit, for 1, 2,
//! 3 and 5 workers (uneven bands). Feature `ndarray`.
#![cfg(feature = "ndarray")]

#[allow(dead_code)]
#[path = "../examples/heat_diffusion.rs"]
mod heat;

shmkit::fork_server_at_load!();

#[test]
fn bands_over_ndarray_views_match_the_single_process_run_bit_for_bit() {
    let (n, steps) = (67, 40);
    let expect = heat::reference(n, steps);
    for workers in [1, 2, 3, 5] {
        let (got, _) = heat::run_pool(workers, n, steps);
        assert_eq!(got.len(), expect.len());
        let same = got.iter().zip(&expect).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{workers} workers differ from the single-process run");
    }
}
