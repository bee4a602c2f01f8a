//! `Pool` with real worker processes: the API family, callbacks, close/join/terminate,
//! initializer, max_tasks_per_child, and no orphans. Every wait is bounded.
//!
//! The fork server starts before libtest's threads exist, so pools created here (from a
//! multi-threaded process) start through it: that is the fork-safety design under test.

mod common;

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use shmkit::pool::{Pool, PoolError};

shmkit::fork_server_at_load!();

const T: Duration = Duration::from_secs(20);

fn pool(n: usize) -> Pool {
    Pool::new(n).expect("start pool")
}

#[test]
fn map_in_order() {
    let p = pool(2);
    let out = p.map(|x: u64| x * 3, 0..1000).unwrap();
    assert_eq!(out, (0..1000).map(|x| x * 3).collect::<Vec<_>>());
    let out = p.map_chunksize(|x: u32| x + 1, 0..257u32, 1).unwrap();
    assert_eq!(out, (1..258).collect::<Vec<_>>());
    assert!(p.map(|x: u8| x, Vec::<u8>::new()).unwrap().is_empty());
}

#[test]
fn starmap_and_apply() {
    let p = pool(2);
    assert_eq!(p.starmap(|a: u32, b: f64| a as f64 * b, [(2, 1.5), (4, 0.25)]).unwrap(), [3.0, 1.0]);
    assert_eq!(p.apply(|x: [u8; 3]| x[0] + x[1] + x[2], [1, 2, 3]).unwrap(), 6);
}

#[test]
fn apply_async_handles() {
    let p = pool(2);
    let hs: Vec<_> = (0..50u64).map(|i| p.apply_async(|x: u64| x * x, i).unwrap()).collect();
    let sum: u64 = hs.into_iter().map(|h| h.get().unwrap()).sum();
    assert_eq!(sum, (0..50u64).map(|x| x * x).sum());
    let h = p.apply_async(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), 300).unwrap();
    assert!(!h.ready());
    assert!(matches!(h.get_timeout(Duration::from_millis(10)), Err(PoolError::Timeout { .. })));
    h.get_timeout(T).unwrap();
    assert!(h.ready());
}

#[test]
fn callbacks_run_without_get() {
    let p = pool(2);
    let (tx, rx) = mpsc::channel();
    for i in 0..10u32 {
        let (ok, err) = (tx.clone(), tx.clone());
        p.apply_async_with(
            |x: u32| if x == 7 { panic!("seven") } else { x },
            i,
            move |r| ok.send(Ok(r)).unwrap(),
            move |e| err.send(Err(e.to_string())).unwrap(),
        )
        .unwrap();
    }
    let mut got: Vec<_> = (0..10).map(|_| rx.recv_timeout(T).expect("callback")).collect();
    got.sort_by_key(|r| r.clone().unwrap_or(7));
    assert_eq!(got.iter().filter(|r| r.is_ok()).count(), 9);
    let err = got.iter().find_map(|r| r.clone().err()).unwrap();
    assert!(err.contains("seven"), "{err}");
}

#[test]
fn message_too_large_is_an_error() {
    let p = Pool::builder().processes(1).message_size(64).build().unwrap();
    assert!(matches!(p.apply(|x: [u64; 16]| x[0], [0; 16]), Err(PoolError::MessageTooLarge { .. })));
    // map cuts chunks to fit.
    assert_eq!(p.map_chunksize(|x: u64| x, 0..100u64, 50).unwrap().len(), 100);
}

fn gone(pid: u32) -> bool {
    // Gone, or a zombie about to be reaped by its (dying) parent.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')),
    }
}

#[test]
fn close_join_finishes_queued_work_and_reaps_everyone() {
    let p = pool(2);
    let hs: Vec<_> = (0..20u64).map(|i| p.apply_async(|x: u64| x + 1, i).unwrap()).collect();
    let pids = p.worker_pids();
    let mgr = p.manager_pid();
    p.close();
    assert!(matches!(p.apply(|x: u8| x, 1), Err(PoolError::Closed)));
    p.join_timeout(T).unwrap();
    assert_eq!(hs.into_iter().map(|h| h.get_timeout(T).unwrap()).sum::<u64>(), (1..=20).sum());
    for pid in pids.into_iter().chain([mgr]) {
        common::wait_until("pool processes to be gone", T, || gone(pid));
    }
}

#[test]
fn drop_and_terminate_leave_no_processes() {
    let p = pool(3);
    let h = p.apply_async(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), 60_000).unwrap();
    let mut pids = p.worker_pids();
    pids.push(p.manager_pid());
    p.terminate();
    assert!(matches!(h.get_timeout(T), Err(PoolError::Terminated)));
    for &pid in &pids {
        common::wait_until("terminated pool processes to be gone", T, || gone(pid));
    }
    let p = pool(2);
    let mut pids = p.worker_pids();
    pids.push(p.manager_pid());
    drop(p);
    for &pid in &pids {
        common::wait_until("dropped pool processes to be gone", T, || gone(pid));
        assert!(!Path::new(&format!("/proc/{pid}/task")).exists() || gone(pid));
    }
}

static INIT_VALUE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn init_with(v: u64) {
    INIT_VALUE.store(v, std::sync::atomic::Ordering::Relaxed);
}

fn read_init(_: ()) -> u64 {
    INIT_VALUE.load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn initializer_runs_in_every_worker() {
    let p = Pool::builder().processes(2).initializer_with(init_with, 77u64).build().unwrap();
    assert!(p.map_chunksize(read_init, vec![(); 40], 1).unwrap().iter().all(|&v| v == 77));
}

fn bad_init() {
    panic!("cannot initialise");
}

#[test]
fn failing_initializer_is_reported() {
    match Pool::builder().processes(1).initializer(bad_init).build() {
        Err(PoolError::InitializerFailed { reason }) => assert!(reason.contains("cannot initialise"), "{reason}"),
        Ok(p) => match p.apply(|x: u8| x, 1) {
            Err(PoolError::InitializerFailed { reason }) => assert!(reason.contains("cannot initialise"), "{reason}"),
            other => panic!("expected InitializerFailed, got {other:?}"),
        },
        Err(e) => panic!("expected InitializerFailed, got {e}"),
    }
}

#[test]
fn max_tasks_per_child_recycles_workers() {
    let p = Pool::builder().processes(1).max_tasks_per_child(5).build().unwrap();
    let pids = p.map_chunksize(|_: ()| std::process::id(), vec![(); 20], 1).unwrap();
    let mut distinct = pids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "{pids:?}");
}

#[test]
fn imap_ordered_and_unordered() {
    let p = pool(2);
    let got: Vec<u64> = p.imap(|x: u64| x * 2, 0..500u64, 7).unwrap().map(Result::unwrap).collect();
    assert_eq!(got, (0..500).map(|x| x * 2).collect::<Vec<_>>());
    let mut got: Vec<u64> = p.imap_unordered(|x: u64| x + 1, 0..300u64, 1).unwrap().map(Result::unwrap).collect();
    got.sort();
    assert_eq!(got, (1..301).collect::<Vec<_>>());
    // A panic fails its chunk's items only.
    let got: Vec<_> = p.imap(|x: u32| if x == 3 { panic!("three") } else { x }, 0..6u32, 1).unwrap().collect();
    assert_eq!(got.iter().filter(|r| r.is_err()).count(), 1);
    assert!(matches!(&got[3], Err(PoolError::TaskPanicked { message, .. }) if message.contains("three")));
}

#[test]
fn polling_ready_alone_completes_a_task() {
    let p = pool(2);
    let r = p.apply_async(|x: u64| x + 1, 41).unwrap();
    // Python users poll `ready()`; it must collect the result by itself, not only `get`.
    common::wait_until("ready() to report the finished task", T, || r.ready());
    assert_eq!(r.get().unwrap(), 42);
}

#[test]
fn map_reports_progress_up_to_the_total() {
    let p = pool(2);
    let mut seen = Vec::new();
    let out = p.map_with_progress(|x: u64| x + 1, 0..5000, |pr| seen.push(pr)).unwrap();
    assert_eq!(out.len(), 5000);
    assert!(seen.iter().all(|pr| pr.total == 5000 && pr.completed <= 5000));
    assert!(seen.windows(2).all(|w| w[0].completed < w[1].completed), "counts only grow: {seen:?}");
    assert_eq!(seen.last().map(|pr| pr.completed), Some(5000));
}
