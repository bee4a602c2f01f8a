//! A process forked while other threads are inside shmkit's own bookkeeping (the per-thread
//! held-lock registry, its fork handlers) must not inherit that bookkeeping locked: the child
//! takes a lock and exits, and never hangs.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Exit, fork_child, wait_pid};
use shmkit::sync::Mutex;

static LOCK: Mutex<u64> = Mutex::new(0);

#[test]
fn children_forked_while_threads_register_and_retire_their_locks_never_hang() {
    let _serial = common::serial();
    let stop = Arc::new(AtomicBool::new(false));
    // Each short-lived thread's first lock registers it in the process's held-lock registry,
    // and its exit deregisters it: both under the registry's lock.
    let churn: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::spawn(|| drop(LOCK.try_lock())).join().unwrap();
                }
            })
        })
        .collect();
    let mut hung = 0;
    for _ in 0..3000 {
        // The forking thread never locked in this process: the child registers it afresh.
        let pid = fork_child(|| {
            let _ = LOCK.try_lock(); // held by a parent thread that is not in the child: refused, fine
            0
        });
        if wait_pid(pid, Duration::from_secs(10)) != Exit::Code(0) {
            hung += 1;
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in churn {
        t.join().unwrap();
    }
    assert_eq!(hung, 0, "a child forked during the registry's critical section hung");
}
