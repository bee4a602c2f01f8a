//! Per-item results (`map_results` and siblings): crashes, hangs (task timeouts) and panics
//! fail only their own input, with its index, pid and cause; the worker is replaced and every
//! other input runs once. Every wait is bounded (task timeouts, `T`).

mod common;

use std::time::{Duration, Instant};

use shmkit::SharedArray;
use shmkit::pool::{ItemOptions, Pool, PoolError, TaskError};

shmkit::fork_server_at_load!();

/// What `target` does with an input.
fn target(x: u32) -> u32 {
    match x % 1000 {
        7 => std::process::abort(),
        13 => loop {
            std::thread::sleep(Duration::from_millis(5));
        },
        21 => panic!("planted panic at {x}"),
        33 => std::process::exit(9),
        _ => x.wrapping_mul(3),
    }
}

fn expect_ok(r: &Result<u32, TaskError>, x: u32) {
    assert_eq!(r.as_ref().ok(), Some(&x.wrapping_mul(3)), "input {x}: {r:?}");
}

/// Check one result of `target` over input `x`.
fn check(r: &Result<u32, TaskError>, x: u32, index: usize) {
    match x % 1000 {
        7 => {
            let e = r.as_ref().unwrap_err();
            assert!(matches!(e.error, PoolError::WorkerDied { signal: libc::SIGABRT, .. }), "{e}");
            assert!(e.is_crash() && e.index == index && e.pid().is_some(), "{e}");
        }
        13 => {
            let e = r.as_ref().unwrap_err();
            assert!(e.is_timeout() && e.index == index, "{e}");
            match e.error {
                PoolError::TaskTimedOut { ran, limit, .. } => assert!(ran >= limit, "{ran:?} < {limit:?}"),
                _ => unreachable!(),
            }
        }
        21 => {
            let e = r.as_ref().unwrap_err();
            assert!(e.is_panic() && e.to_string().contains(&format!("planted panic at {x}")), "{e}");
        }
        33 => assert!(matches!(r, Err(TaskError { error: PoolError::WorkerExited { code: 9, .. }, .. })), "{r:?}"),
        _ => expect_ok(r, x),
    }
}

fn pool(timeout_ms: u64) -> Pool {
    Pool::builder().processes(2).task_timeout(Duration::from_millis(timeout_ms)).build().expect("pool")
}

#[test]
fn map_results_isolates_crashes_hangs_panics_and_exits_in_one_chunk() {
    let p = pool(100);
    let inputs: Vec<u32> = (0..40).collect();
    let inputs: Vec<u32> = inputs.iter().map(|&i| if i < 4 { [7, 13, 21, 33][i as usize] } else { i }).collect();
    for chunk in [1, 4, 40] {
        let start = Instant::now();
        let out = p.map_results_with(target, inputs.iter().copied(), ItemOptions::new().chunksize(chunk)).unwrap();
        assert_eq!(out.len(), inputs.len());
        for (i, (r, &x)) in out.iter().zip(&inputs).enumerate() {
            check(r, x, i);
        }
        assert!(start.elapsed() < Duration::from_secs(10), "chunk {chunk}: {:?}", start.elapsed());
    }
    assert_eq!(p.map(|x: u32| x + 1, 0..10u32).unwrap()[9], 10);
}

#[test]
fn imap_results_streams_in_order_through_crashes_and_hangs() {
    let p = pool(100);
    for chunk in [1, 8] {
        let inputs = (0..3000u32).map(|i| {
            if i % 97 == 5 {
                7
            } else if i == 1500 {
                13
            } else {
                i + 1000
            }
        });
        let expect: Vec<u32> = inputs.clone().collect();
        let mut n = 0;
        let start = Instant::now();
        for (i, r) in p.imap_results_with(target, inputs, ItemOptions::new().chunksize(chunk)).unwrap().enumerate() {
            check(&r, expect[i], i);
            n += 1;
        }
        assert_eq!(n, 3000);
        assert!(start.elapsed() < Duration::from_secs(20), "{:?}", start.elapsed());
    }
}

#[test]
fn an_endless_imap_results_takes_inputs_only_as_it_goes_and_drops_cleanly() {
    let p = pool(1000);
    let mut it = p.imap_results(target, (0u32..).map(|i| i * 1000 + 500)).unwrap();
    for i in 0..500u32 {
        expect_ok(&it.next().unwrap(), i * 1000 + 500);
    }
    drop(it);
    assert_eq!(p.map(|x: u32| x, 0..4u32).unwrap(), [0, 1, 2, 3]);
}

fn chunk_target(start: usize, c: &[u32]) -> u64 {
    match start {
        0 => std::process::abort(),
        64 => loop {
            std::hint::spin_loop();
        },
        _ => c.iter().map(|&x| u64::from(x)).sum(),
    }
}

fn chunk_mut_target(start: usize, c: &mut [u32]) {
    if start == 128 {
        panic!("chunk at 128");
    }
    c.iter_mut().for_each(|x| *x += 1);
}

#[test]
fn chunk_forms_fail_only_their_own_chunk() {
    let p = pool(5000);
    let a = SharedArray::<u32>::create(None, 256).unwrap();
    a.write().unwrap().iter_mut().enumerate().for_each(|(i, x)| *x = i as u32);
    let opts = ItemOptions::new().timeout(Duration::from_millis(100));
    let out = p.map_chunks_results_with(&a, 64, chunk_target, opts).unwrap();
    assert_eq!(out.len(), 4);
    assert!(out[0].as_ref().is_err_and(|e| e.is_crash() && e.index == 0), "{:?}", out[0]);
    assert!(out[1].as_ref().is_err_and(|e| e.is_timeout() && e.index == 1), "{:?}", out[1]);
    assert_eq!(*out[2].as_ref().unwrap(), (128..192u64).sum::<u64>());
    assert_eq!(*out[3].as_ref().unwrap(), (192..256u64).sum::<u64>());
    let out = p.map_chunks_mut_results(&a, 64, chunk_mut_target).unwrap();
    assert!(out[2].as_ref().is_err_and(|e| e.is_panic() && e.index == 2), "{:?}", out[2]);
    assert!(out.iter().enumerate().all(|(i, r)| i == 2 || r.is_ok()), "{out:?}");
    let data = a.read().unwrap();
    assert_eq!((data[0], data[127], data[128], data[200]), (1, 128, 128, 201));
}
