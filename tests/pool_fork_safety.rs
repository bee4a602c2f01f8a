//! Fork safety: a pool created after threads exist, while other threads hold locks, must
//! work. The fork server (started before `main`) forks the pool's manager, so no worker
//! starts from a snapshot in which another thread held stdout or a mutex.

mod common;

use std::io::Write;
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shmkit::pool::Pool;
use shmkit::process::StartMethod;

shmkit::fork_server_at_load!();

static STATE: Mutex<u64> = Mutex::new(0);

fn uses_held_locks(x: u64) -> u64 {
    // Both locks are held by another thread of the test process right now.
    let mut g = STATE.lock().unwrap();
    *g += x;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(b"");
    let _ = out.flush();
    *g
}

#[test]
fn pool_created_while_other_threads_hold_locks_works() {
    let (tx, rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let _state = STATE.lock().unwrap();
        let _stdout = std::io::stdout().lock();
        tx.send(()).unwrap();
        let _ = done_rx.recv_timeout(Duration::from_secs(30));
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(shmkit::process::thread_count().unwrap() > 2);
    let start = Instant::now();
    let pool = Pool::new(2).unwrap();
    let out = pool.map_chunksize(uses_held_locks, [1u64; 20], 1).unwrap();
    assert_eq!(out.len(), 20);
    // Each worker's own copy of the mutex was free: every result is a running count.
    assert!(out.iter().all(|&v| (1..=20).contains(&v)));
    // Replacement workers too (forked by the single-threaded manager).
    let victim = pool.worker_pids()[0];
    common::kill(victim as i32, libc::SIGKILL);
    common::wait_until("a replacement worker", Duration::from_secs(10), || pool.worker_pids()[0] != victim);
    assert_eq!(pool.map_chunksize(uses_held_locks, [1u64; 10], 1).unwrap().len(), 10);
    assert!(start.elapsed() < Duration::from_secs(20));
    drop(pool);
    done_tx.send(()).unwrap();
    holder.join().unwrap();
}

#[test]
fn pools_from_many_threads_at_once() {
    let handles: Vec<_> = (0..4u64)
        .map(|i| {
            std::thread::spawn(move || {
                let pool = Pool::builder().processes(1).start_method(StartMethod::ForkServer).build().unwrap();
                pool.map(|x: u64| x * 10, [i, i + 1]).unwrap()
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let i = i as u64;
        assert_eq!(h.join().unwrap(), [i * 10, (i + 1) * 10]);
    }
}

/// A fresh process (a re-executed copy of this binary running one test with
/// `--test-threads=1`) forks the manager directly: `force_fork` (libtest's main thread
/// exists, so `StartMethod::Fork` alone is refused).
#[test]
fn direct_fork_pool_in_a_fresh_process() {
    let mut child = common::spawn_role("direct_fork_pool_role", "fork", &[]);
    assert_eq!(common::wait_child(&mut child, Duration::from_secs(30)), common::Exit::Code(0));
}

#[test]
#[ignore]
fn direct_fork_pool_role() {
    if common::role().is_none() {
        return;
    }
    // `StartMethod::Fork` alone refuses: libtest's main thread exists.
    let e = Pool::builder().processes(2).start_method(StartMethod::Fork).build().unwrap_err();
    assert!(matches!(e, shmkit::pool::PoolError::Process(shmkit::process::ProcessError::ThreadsExist { .. })));
    // SAFETY: the only other thread is libtest's main thread, which waits for this test on a
    // channel and holds no lock the pool's processes take; nothing here prints.
    let pool = unsafe { Pool::builder().processes(2).force_fork() }.build().unwrap();
    assert_eq!(pool.map(|x: u32| x + 1, 0..100u32).unwrap()[99], 100);
    let victim = pool.worker_pids()[0];
    let h = pool.apply_async(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), 60_000).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    for pid in pool.worker_pids() {
        common::kill(pid as i32, libc::SIGKILL);
    }
    assert!(h.get_timeout(Duration::from_secs(2)).is_err());
    assert_eq!(pool.map_chunksize(|x: u8| x, 0..20u8, 1).unwrap().len(), 20);
    assert!(!pool.worker_pids().contains(&victim));
}
