//! `map_chunks` over a `SharedArray`: every element seen exactly once, in place, and a
//! worker's private memory does not grow with the array (read from /proc/<pid>/smaps_rollup).

mod common;

use shmkit::SharedArray;
use shmkit::pool::{Pool, PoolError};

shmkit::fork_server_at_load!();

fn fill_index(start: usize, chunk: &mut [u64]) {
    for (i, x) in chunk.iter_mut().enumerate() {
        *x = (start + i) as u64;
    }
}

fn sum(_: usize, chunk: &[u64]) -> u64 {
    chunk.iter().sum()
}

#[test]
fn chunks_cover_the_array_exactly_once() {
    let pool = Pool::new(2).unwrap();
    let a = SharedArray::<u64>::create(None, 100_003).unwrap();
    pool.map_chunks_mut(&a, 1000, fill_index).unwrap();
    let v = a.copy_to_vec().unwrap();
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));
    let sums = pool.map_chunks(&a, 1000, sum).unwrap();
    assert_eq!(sums.len(), 101);
    assert_eq!(sums.iter().sum::<u64>(), (0..100_003u64).sum());
    // Chunk boundaries are where index arithmetic puts them.
    let starts = pool.map_chunks(&a, 4096, |start, c: &[u64]| [start as u64, c.len() as u64]).unwrap();
    for (i, &[s, l]) in starts.iter().enumerate() {
        assert_eq!(s, i as u64 * 4096);
        assert_eq!(l, 4096.min(100_003 - s));
    }
}

#[test]
fn anonymous_arrays_are_refused_with_advice() {
    let pool = Pool::new(1).unwrap();
    let a = SharedArray::<u64>::anonymous(10).unwrap();
    let e = pool.map_chunks(&a, 5, sum).unwrap_err();
    assert!(matches!(e, PoolError::AnonymousArray));
    assert!(e.to_string().contains("SharedArray::create(None"));
}

#[test]
fn a_chunk_panic_is_reported_and_the_pool_goes_on() {
    let pool = Pool::new(2).unwrap();
    let a = SharedArray::<u64>::create(None, 10_000).unwrap();
    pool.map_chunks_mut(&a, 100, fill_index).unwrap();
    let r = pool.map_chunks(&a, 100, |start, _: &[u64]| -> u8 {
        if start == 4200 { panic!("chunk at {start}") } else { 0 }
    });
    assert!(
        matches!(r, Err(PoolError::TaskPanicked { ref message, .. }) if message.contains("chunk at 4200")),
        "{r:?}"
    );
    // The panicking worker released its claim: the whole array is claimable again.
    assert_eq!(pool.map_chunks(&a, 100, sum).unwrap().iter().sum::<u64>(), (0..10_000u64).sum());
    drop(a.claim_mut(..).unwrap());
}

/// Private_Clean + Private_Dirty of a process, in bytes.
fn private_bytes(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).expect("smaps_rollup");
    s.lines()
        .filter(|l| l.starts_with("Private_Clean:") || l.starts_with("Private_Dirty:"))
        .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024)
        .sum()
}

#[test]
fn worker_private_memory_does_not_grow_with_the_array() {
    const N: usize = 32 << 20; // 32 Mi f64 = 256 MiB
    let pool = Pool::new(2).unwrap();
    let a = SharedArray::<f64>::create(None, N).unwrap();
    a.write().unwrap().fill(1.0); // this process maps every page too: workers' pages are shared
    let before: Vec<u64> = pool.worker_pids().iter().map(|&p| private_bytes(p)).collect();
    pool.map_chunks_mut(&a, N / 8, |_, c: &mut [f64]| c.iter_mut().for_each(|x| *x *= 2.0)).unwrap();
    let sums = pool.map_chunks(&a, N / 8, |_, c: &[f64]| c.iter().sum::<f64>()).unwrap();
    assert_eq!(sums.iter().sum::<f64>(), 2.0 * N as f64);
    let array_bytes = (N * 8) as u64;
    for (pid, before) in pool.worker_pids().into_iter().zip(before) {
        let after = private_bytes(pid);
        eprintln!(
            "worker {pid}: private {} KiB before, {} KiB after (array {} MiB)",
            before >> 10,
            after >> 10,
            array_bytes >> 20
        );
        assert!(after < array_bytes / 16, "worker {pid} has {after} private bytes for a {array_bytes}-byte array");
    }
}
