//! The heat-diffusion example, small: worker bands meeting at a process-shared Barrier must
//! give the single-process result bit for bit, for 1, 2 and 3 workers (uneven bands).

#[allow(dead_code)]
#[path = "../examples/heat_diffusion.rs"]
mod heat;

shmkit::fork_server_at_load!();

#[test]
fn bands_with_a_barrier_match_the_single_process_run_bit_for_bit() {
    let (n, steps) = (67, 40);
    let expect = heat::reference(n, steps);
    for workers in [1, 2, 3] {
        let (got, _) = heat::run_pool(workers, n, steps);
        assert_eq!(got.len(), expect.len());
        let same = got.iter().zip(&expect).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{workers} workers differ from the single-process run");
    }
}
