//! `shmkit::mpi` with real MPI processes: each `#[test]` re-runs this binary under
//! `mpiexec -n N` for one `#[ignore]`d `rank_*` test, which then runs on every rank.
//! Needs `--features mpi` and `mpiexec` on PATH (`.ci/run` installs MPICH).
#![cfg(feature = "mpi")]

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mpi::topology::SimpleCommunicator;
use mpi::traits::Communicator;
use shmkit::mpi::{HaloArray, MpiError, Node, NodeArray, Split};

/// Every MPI run must finish within this (a hang fails the test instead of CI).
const DEADLINE: Duration = Duration::from_secs(120);

/// One MPI job at a time: two jobs of busy-polling ranks on a small machine starve each other.
static ONE_JOB: Mutex<()> = Mutex::new(());

/// Run `rank_test` on `ranks` ranks with `SHMKIT_MPI_SPLIT=split`; panic (with the job's
/// output) unless every rank passes within [`DEADLINE`].
fn mpiexec(ranks: usize, split: &str, rank_test: &str) {
    match run_job(ranks, split, rank_test) {
        (Some(s), _) if s.success() => {}
        (Some(s), output) => panic!("{rank_test} on {ranks} ranks (split {split}) failed: {s}\n{output}"),
        (None, output) => {
            panic!("{rank_test} on {ranks} ranks (split {split}) did not finish within {DEADLINE:?}\n{output}")
        }
    }
}

/// Run the job; its exit status (`None`: killed at [`DEADLINE`]) and output.
fn run_job(ranks: usize, split: &str, rank_test: &str) -> (Option<std::process::ExitStatus>, String) {
    let _one = ONE_JOB.lock().unwrap_or_else(|e| e.into_inner());
    let exe = std::env::current_exe().expect("test binary path");
    let log_path = std::env::temp_dir().join(format!("shmkit-mpi-test-{}-{rank_test}-{split}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).expect("create log file");
    let mut child = Command::new("mpiexec")
        .args(["-n", &ranks.to_string()])
        .arg(exe)
        .args(["--exact", rank_test, "--ignored", "--test-threads=1"])
        .env("SHMKIT_MPI_SPLIT", split)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log file"))
        .stderr(log)
        .spawn()
        .expect("mpiexec not found: install MPICH (apt-get install mpich libmpich-dev)");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for mpiexec") {
            break Some(status);
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    (status, output)
}

/// Initialise MPI for a rank test; a panic on any rank aborts the whole job at once (as
/// MPI_ERRORS_ARE_FATAL would), instead of leaving the other ranks waiting in a collective.
fn init_rank() -> mpi::environment::Universe {
    let universe = mpi::initialize().expect("MPI initialises once");
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        SimpleCommunicator::world().abort(101);
    }));
    universe
}

#[test]
fn split_values_parse_or_explain() {
    assert_eq!(Split::parse("shared").unwrap(), Split::Shared);
    assert_eq!(Split::parse("").unwrap(), Split::Shared);
    assert_eq!(Split::parse("rank").unwrap(), Split::Rank);
    assert_eq!(Split::parse("4").unwrap(), Split::Ranks(4.try_into().unwrap()));
    for bad in ["0", "-1", "ranks", "node2"] {
        let err = Split::parse(bad).unwrap_err();
        assert!(matches!(err, MpiError::BadSplit { .. }), "{bad}: {err}");
        assert!(err.to_string().contains("use `shared`"), "message says what to do: {err}");
    }
}

#[test]
fn node_array_epochs_two_ranks() {
    mpiexec(2, "shared", "rank_node_array_epochs");
}

#[test]
fn node_array_epochs_one_rank_per_node() {
    mpiexec(2, "rank", "rank_node_array_epochs");
}

#[test]
fn halo_array_matches_serial_shared_and_messages() {
    mpiexec(2, "shared", "rank_halo_array_matches_serial");
    mpiexec(2, "rank", "rank_halo_array_matches_serial");
}

#[test]
fn halo_array_matches_serial_three_ranks_mixed() {
    // Ranks 0 and 1 share a window, rank 2 is another "node": both paths in one job, and a
    // middle rank with two neighbours.
    mpiexec(3, "2", "rank_halo_array_matches_serial");
}

#[test]
fn halo_array_rejects_bad_arguments() {
    mpiexec(2, "shared", "rank_halo_array_rejects_bad_arguments");
}

#[test]
fn a_dead_rank_aborts_the_job() {
    // Rank 1 is SIGKILLed while rank 0 waits for it in a fence: no per-rank recovery as in
    // the pool, but no hang either: the process manager ends the whole job with an error.
    let start = Instant::now();
    let (status, output) = run_job(2, "shared", "rank_dies_before_fence");
    let status = status.unwrap_or_else(|| panic!("the job hung after a rank died\n{output}"));
    assert!(!status.success(), "a job with a dead rank must fail\n{output}");
    assert!(start.elapsed() < Duration::from_secs(30), "took {:?}", start.elapsed());
}

#[test]
#[ignore = "runs on every rank under mpiexec (see a_dead_rank_aborts_the_job)"]
fn rank_dies_before_fence() {
    let universe = init_rank();
    let node = Node::new(&universe.world()).expect("node");
    let mut a = NodeArray::<f64>::new(&node, 16).expect("allocate");
    a.back_mut().fill(1.0);
    if node.world_rank() == 1 {
        // SAFETY: raise(2) has no memory-safety preconditions; SIGKILL ends this process.
        unsafe { libc::raise(libc::SIGKILL) };
    }
    a.fence().expect("fence"); // rank 0 waits here for a rank that is gone
    unreachable!("the fence cannot complete without rank 1");
}

#[test]
#[ignore = "runs on every rank under mpiexec (see node_array_epochs_*)"]
fn rank_node_array_epochs() {
    let universe = init_rank();
    let world = universe.world();
    let node = Node::new(&world).expect("node");
    let split = Split::from_env().expect("split");
    assert_eq!(node.split(), split);
    let expected_node_size = if split == Split::Rank { 1 } else { world.size() as usize };
    assert_eq!(node.node_size(), expected_node_size);
    assert_eq!(node.members()[node.node_rank()], node.world_rank());
    assert_eq!(node.node_count(), world.size() as usize / expected_node_size);

    let me = node.node_rank();
    let len = 10 + me; // unequal parts
    let mut a = NodeArray::<u64>::new(&node, len).expect("allocate");
    assert_eq!(a.len(), len);
    assert_eq!(a.part_lens(), (0..node.node_size()).map(|r| 10 + r).collect::<Vec<_>>());
    // Epoch 0: everything starts zeroed.
    assert!(a.front().own().iter().all(|&x| x == 0));
    assert!(a.back_mut().iter().all(|&x| x == 0));
    for epoch in 0..6u64 {
        assert_eq!(a.epoch(), epoch);
        {
            let (front, back) = a.split_mut();
            // Every part of the front holds what its owner wrote last epoch.
            for r in 0..front.len() {
                let part = front.part(r).expect("part");
                assert_eq!(part.len(), 10 + r);
                let want = if epoch == 0 { 0 } else { 1000 * (epoch - 1) + r as u64 };
                assert!(part.iter().all(|&x| x == want), "epoch {epoch}, part {r}: {part:?}");
            }
            assert!(matches!(front.part(front.len()), Err(MpiError::NoSuchRank { .. })));
            // The back holds what this rank wrote two epochs ago.
            let old = if epoch < 2 { 0 } else { 1000 * (epoch - 2) + me as u64 };
            assert!(back.iter().all(|&x| x == old), "epoch {epoch}: back {back:?}");
            back.fill(1000 * epoch + me as u64);
        }
        a.fence().expect("fence");
    }

    // A rank may own nothing.
    let mut empty = NodeArray::<f64>::new(&node, if me == 0 { 4 } else { 0 }).expect("allocate");
    assert_eq!(empty.is_empty(), me != 0);
    empty.back_mut().fill(2.5);
    empty.fence().expect("fence");
    let front = empty.front();
    assert_eq!(front.part(0).expect("part 0"), &[2.5; 4]);
    assert!((1..front.len()).all(|r| front.part(r).expect("part").is_empty()));
}

/// A deterministic 1-D stencil over a distributed `u64` array with halo 3, checked against
/// the same computation on one array.
#[test]
#[ignore = "runs on every rank under mpiexec (see halo_array_matches_serial_*)"]
fn rank_halo_array_matches_serial() {
    const HALO: usize = 3;
    const STEPS: usize = 7;
    let universe = init_rank();
    let world = universe.world();
    let node = Node::new(&world).expect("node");
    let size = node.world_size();
    let counts: Vec<usize> = (0..size).map(|r| 5 + 2 * r).collect();
    let total: usize = counts.iter().sum();

    // One update rule on a whole array: cell i from cells i-3..=i+3 (missing ones count 0).
    let rule = |get: &dyn Fn(isize) -> u64, i: usize, epoch: u64| -> u64 {
        let mut acc = epoch.wrapping_mul(0x9E37_79B9) ^ i as u64;
        for d in -(HALO as isize)..=HALO as isize {
            acc = acc.wrapping_mul(31).wrapping_add(get(i as isize + d));
        }
        acc
    };
    let mut serial = vec![0u64; total];
    for epoch in 0..STEPS as u64 {
        let cur = serial.clone();
        let get = |j: isize| if j < 0 || j as usize >= total { 0 } else { cur[j as usize] };
        for (i, x) in serial.iter_mut().enumerate() {
            *x = rule(&get, i, epoch);
        }
    }

    let mut a = HaloArray::<u64>::new(&node, &counts, HALO).expect("halo array");
    let range = a.range();
    assert_eq!(range.len(), counts[node.world_rank()]);
    let (lo_remote, hi_remote) = a.remote_neighbours();
    let me = node.world_rank();
    assert_eq!(lo_remote, me > 0 && node.node_rank_of(me - 1).is_none());
    assert_eq!(hi_remote, me + 1 < size && node.node_rank_of(me + 1).is_none());
    for epoch in 0..STEPS as u64 {
        let s = a.step();
        assert_eq!(s.before.len(), if range.start == 0 { 0 } else { HALO });
        assert_eq!(s.after.len(), if range.end == total { 0 } else { HALO });
        let get = |j: isize| -> u64 {
            let start = range.start as isize;
            if j < 0 || j as usize >= total {
                0
            } else if j < start {
                s.before[(j - (start - HALO as isize)) as usize]
            } else if (j as usize) < range.end {
                s.own[(j - start) as usize]
            } else {
                s.after[j as usize - range.end]
            }
        };
        let next: Vec<u64> = range.clone().map(|i| rule(&get, i, epoch)).collect();
        s.out.copy_from_slice(&next);
        a.fence().expect("fence");
    }
    assert_eq!(a.own(), &serial[range.clone()]);
    match a.gather(0).expect("gather") {
        Some(all) => {
            assert_eq!(node.world_rank(), 0);
            assert_eq!(all, serial);
        }
        None => assert_ne!(node.world_rank(), 0),
    }
}

#[test]
#[ignore = "runs on every rank under mpiexec (see halo_array_rejects_bad_arguments)"]
fn rank_halo_array_rejects_bad_arguments() {
    let universe = init_rank();
    let world = universe.world();
    let node = Node::new(&world).expect("node");
    let size = node.world_size();

    let err = HaloArray::<f64>::new(&node, &vec![2; size], 3).unwrap_err();
    assert!(matches!(err, MpiError::BadCounts { .. }), "{err}");
    assert!(err.to_string().contains("fewer than the halo width"), "{err}");

    let err = HaloArray::<f64>::new(&node, &vec![8; size + 1], 1).unwrap_err();
    assert!(matches!(err, MpiError::BadCounts { .. }), "{err}");

    // Ranks that disagree are told so (on every rank), instead of exchanging garbage.
    let halo = 1 + node.world_rank();
    let err = HaloArray::<f64>::new(&node, &vec![8; size], halo).unwrap_err();
    assert!(matches!(err, MpiError::Mismatch { .. }), "{err}");

    // The node still works afterwards.
    let mut ok = HaloArray::<f64>::new(&node, &vec![8; size], 1).expect("valid arguments");
    ok.step().out.fill(1.0);
    ok.fence().expect("fence");
    assert_eq!(ok.own(), &[1.0; 8]);
}
