//! Failure: panics, workers SIGKILLed mid-task (also while holding a shmkit lock), workers
//! that abort or exit, and a killed manager. Nothing may hang: every wait is bounded and the
//! errors must arrive within one second.

mod common;

use std::time::{Duration, Instant};

use shmkit::pool::{Pool, PoolError};
use shmkit::{SharedAtomic, SharedValue};

shmkit::fork_server_at_load!();

const T: Duration = Duration::from_secs(20);

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn kill(pid: u32) {
    common::kill(pid as libc::pid_t, libc::SIGKILL);
}

/// A fixed-size, Pod-friendly segment name for task arguments.
fn name_arg(name: &str) -> [u8; 64] {
    let mut b = [0u8; 64];
    b[..name.len()].copy_from_slice(name.as_bytes());
    b
}

fn name_of(b: &[u8; 64]) -> &str {
    std::str::from_utf8(&b[..b.iter().position(|&c| c == 0).unwrap_or(64)]).unwrap()
}

#[test]
fn panics_come_back_with_their_message_and_the_pool_goes_on() {
    let pool = Pool::new(2).unwrap();
    for _ in 0..3 {
        match pool.apply(|x: u32| -> u32 { panic!("task {x} failed") }, 5) {
            Err(PoolError::TaskPanicked { message, pid }) => {
                assert!(message.contains("task 5 failed"), "{message}");
                assert!(message.contains("pool_failure.rs"), "location missing: {message}");
                assert!(pool.worker_pids().contains(&pid));
            }
            other => panic!("expected TaskPanicked, got {other:?}"),
        }
    }
    let r = pool.map_chunksize(|x: u32| if x == 50 { panic!("item fifty") } else { x }, 0..100u32, 1);
    assert!(matches!(r, Err(PoolError::TaskPanicked { ref message, .. }) if message.contains("item fifty")), "{r:?}");
    assert_eq!(pool.map(|x: u32| x, 0..100u32).unwrap().len(), 100);
}

#[test]
fn sigkill_mid_task_fails_that_call_within_a_second_and_the_worker_is_replaced() {
    let pool = Pool::new(1).unwrap();
    let victim = pool.worker_pids()[0];
    let h = pool.apply_async(sleep_ms, 60_000).unwrap();
    let queued = pool.apply_async(|x: u64| x + 1, 41).unwrap(); // behind it in the same mailbox
    std::thread::sleep(Duration::from_millis(100));
    let killed_at = Instant::now();
    kill(victim);
    match h.get_timeout(Duration::from_secs(5)) {
        Err(PoolError::WorkerDied { pid, signal }) => {
            assert_eq!(pid, victim);
            assert_eq!(signal, libc::SIGKILL);
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    let waited = killed_at.elapsed();
    assert!(waited < Duration::from_secs(1), "the error took {waited:?}");
    let msg = PoolError::WorkerDied { pid: victim, signal: 9 }.to_string();
    assert!(msg.contains(&victim.to_string()) && msg.contains("SIGKILL"), "{msg}");
    // The queued task was not lost: the replacement runs it.
    assert_eq!(queued.get_timeout(T).unwrap(), 42);
    let now = pool.worker_pids()[0];
    assert_ne!(now, victim);
    assert_eq!(pool.map(|x: u8| x, 0..10u8).unwrap().len(), 10);
}

#[test]
fn sigkill_during_map_fails_the_map_and_later_maps_succeed() {
    let pool = Pool::new(2).unwrap();
    let victim = pool.worker_pids()[1];
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        let at = Instant::now();
        kill(victim);
        at
    });
    let r = pool.map_chunksize(sleep_ms, vec![50u64; 40], 1);
    let killed_at = t.join().unwrap();
    let waited = killed_at.elapsed();
    match r {
        Err(PoolError::WorkerDied { pid, signal }) => assert_eq!((pid, signal), (victim, libc::SIGKILL)),
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    assert!(waited < Duration::from_secs(1), "the map returned {waited:?} after the kill");
    assert_eq!(pool.map_chunksize(|x: u64| x * 2, 0..200u64, 1).unwrap()[199], 398);
    assert!(!pool.worker_pids().contains(&victim));
}

/// Lock the shared value, announce it, and hold the lock for a minute.
fn hold_lock(names: [[u8; 64]; 2]) -> u64 {
    let value = SharedValue::<u64>::open(name_of(&names[0])).unwrap();
    let flag = SharedAtomic::<u64>::open(name_of(&names[1])).unwrap();
    let mut guard = value.lock().unwrap();
    *guard += 1;
    flag.store(1, std::sync::atomic::Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(60));
    *guard
}

fn add_one(name: [u8; 64]) -> u64 {
    let value = SharedValue::<u64>::open(name_of(&name)).unwrap();
    let mut guard = value.lock_timeout(Duration::from_secs(5)).unwrap();
    *guard += 1;
    *guard
}

#[test]
fn worker_killed_while_holding_a_shmkit_lock_does_not_wedge_the_pool() {
    let pool = Pool::new(2).unwrap();
    let value = SharedValue::<u64>::create(None, 0).unwrap();
    let flag = SharedAtomic::<u64>::create(None, 0).unwrap();
    let names = [name_arg(value.name().unwrap()), name_arg(flag.name().unwrap())];
    let h = pool.apply_async(hold_lock, names).unwrap();
    common::wait_until("the task to hold the lock", T, || flag.load(std::sync::atomic::Ordering::SeqCst) == 1);
    assert!(value.try_lock().is_err(), "the worker should hold the lock");
    let holder = pool.worker_pids().into_iter().find(|&p| {
        std::fs::read_to_string(format!("/proc/{p}/wchan"))
            .is_ok_and(|w| w.contains("nanosleep") || w.contains("hrtimer"))
    });
    // Kill whichever worker holds it (both if we cannot tell).
    match holder {
        Some(p) => kill(p),
        None => pool.worker_pids().into_iter().for_each(kill),
    }
    assert!(matches!(h.get_timeout(Duration::from_secs(2)), Err(PoolError::WorkerDied { signal: 9, .. })));
    // The pool and the lock both recover: the dead holder's claim is freed for the next locker.
    let r = pool.apply_async(add_one, name_arg(value.name().unwrap())).unwrap();
    assert_eq!(r.get_timeout(Duration::from_secs(10)).unwrap(), 2);
    assert_eq!(value.get().unwrap(), 2);
    assert_eq!(pool.map(|x: u32| x + 1, 0..50u32).unwrap()[49], 50);
}

#[test]
fn abort_and_exit_in_a_task_are_reported() {
    let pool = Pool::new(1).unwrap();
    let r = pool.apply(|_: ()| -> u8 { std::process::abort() }, ());
    assert!(matches!(r, Err(PoolError::WorkerDied { signal: libc::SIGABRT, .. })), "{r:?}");
    let r = pool.apply(|code: i32| -> u8 { std::process::exit(code) }, 7);
    assert!(matches!(r, Err(PoolError::WorkerExited { code: 7, .. })), "{r:?}");
    assert_eq!(pool.apply(|x: u8| x, 3).unwrap(), 3);
}

#[test]
fn a_killed_manager_breaks_the_pool_loudly() {
    let pool = Pool::new(2).unwrap();
    let h = pool.apply_async(sleep_ms, 60_000).unwrap();
    let workers = pool.worker_pids();
    kill(pool.manager_pid());
    let start = Instant::now();
    let r = h.get_timeout(Duration::from_secs(5));
    assert!(matches!(r, Err(PoolError::Broken { .. })), "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(matches!(pool.apply(|x: u8| x, 1), Err(PoolError::Broken { .. })));
    // Its workers died with it.
    for pid in workers {
        common::wait_until("orphaned workers to die", T, || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |s| s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')))
        });
    }
}

/// The manager's children: its workers and, once the pool runs, one spare.
fn children(pid: u32) -> Vec<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    text.split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

fn die(_: u32) -> u32 {
    std::process::abort()
}

/// A worker that dies is replaced by a spare forked ahead of time (no fork between the death
/// and the next task), and a new spare is forked afterwards.
#[test]
fn a_dead_worker_is_replaced_by_the_spare_forked_ahead() {
    let pool = Pool::new(1).unwrap();
    let manager = pool.manager_pid();
    let worker = pool.worker_pids()[0];
    let mut spare = 0;
    common::wait_until("a spare worker", Duration::from_secs(20), || {
        spare = children(manager).into_iter().find(|&p| p != worker).unwrap_or(0);
        spare != 0
    });
    assert!(matches!(pool.apply(die, 0), Err(PoolError::WorkerDied { .. })));
    assert_eq!(pool.apply(|x: u32| x + 1, 1).unwrap(), 2);
    assert_eq!(pool.worker_pids(), [spare], "the spare took the dead worker's mailbox");
    common::wait_until("the next spare", Duration::from_secs(20), || children(manager).len() == 2);
}
