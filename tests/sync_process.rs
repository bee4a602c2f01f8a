//! The primitives between real processes (no deaths here: see `sync_death.rs`): the
//! futex waits must be shared ones, the pthread mutexes process-shared. Children are
//! forked while holding `common::serial()`; they only lock, wait and `_exit`.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Exit, fork_child, wait_pid};
use shmkit::SharedObject;
use shmkit::sync::{Barrier, Condvar, Event, Mutex, RwLock, Semaphore, ShmSafe};

const LONG: Duration = Duration::from_secs(10);

#[repr(C)]
struct Table {
    ping: Semaphore,
    pong: Semaphore,
    barrier: Barrier,
    go: Event,
    count: Mutex<u64>,
    cv: Condvar,
    rw: RwLock<[u64; 4], 8>,
    readers_in: AtomicU64,
    max_readers: AtomicU64,
}

// SAFETY: #[repr(C)], made only of ShmSafe fields.
unsafe impl ShmSafe for Table {}

fn table() -> SharedObject<Table> {
    SharedObject::<Table>::anonymous(|t| t.barrier = Barrier::new(3)).expect("anonymous table")
}

fn ok(pid: libc::pid_t) {
    assert_eq!(wait_pid(pid, LONG), Exit::Code(0));
}

#[test]
fn semaphore_ping_pong_between_processes() {
    let _serial = common::serial();
    let t = table();
    let child = fork_child(|| {
        for _ in 0..2000 {
            if t.ping.acquire_timeout(LONG).is_err() || t.pong.release().is_err() {
                return 1;
            }
        }
        0
    });
    for _ in 0..2000 {
        t.ping.release().unwrap();
        t.pong.acquire_timeout(LONG).unwrap();
    }
    ok(child);
    assert_eq!((t.ping.value(), t.pong.value()), (0, 0));
}

#[test]
fn barrier_event_and_condvar_between_processes() {
    let _serial = common::serial();
    let t = table();
    let kids: Vec<_> = (0..2)
        .map(|_| {
            let t: &Table = &t;
            fork_child(move || {
                if !t.go.wait_timeout(LONG) {
                    return 1;
                }
                for _ in 0..100 {
                    if t.barrier.wait_timeout(LONG).is_err() {
                        return 2;
                    }
                    *t.count.lock().unwrap() += 1;
                }
                let g = t.count.lock().unwrap();
                match t.cv.wait_timeout_while(g, LONG, |c| *c < 1000) {
                    Ok((_, r)) if !r.timed_out() => 0,
                    _ => 3,
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(10));
    t.go.set();
    for _ in 0..100 {
        t.barrier.wait_timeout(LONG).unwrap();
        *t.count.lock().unwrap() += 1;
    }
    *t.count.lock().unwrap() = 1000;
    t.cv.notify_all();
    for k in kids {
        ok(k);
    }
}

#[test]
fn rwlock_readers_overlap_across_processes_and_writers_exclude() {
    let _serial = common::serial();
    let t = table();
    let kids: Vec<_> = (0..3)
        .map(|k| {
            let t: &Table = &t;
            fork_child(move || {
                for i in 0..300u64 {
                    if (i + k) % 3 == 0 {
                        let mut w = t.rw.write_timeout(LONG).unwrap();
                        for x in w.iter_mut() {
                            *x += 1;
                        }
                    } else {
                        let r = t.rw.read_timeout(LONG).unwrap();
                        let n = t.readers_in.fetch_add(1, Ordering::SeqCst) + 1;
                        t.max_readers.fetch_max(n, Ordering::SeqCst);
                        if r.iter().any(|&x| x != r[0]) {
                            return 1; // a reader saw a half-done write
                        }
                        std::thread::sleep(Duration::from_micros(50));
                        t.readers_in.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                0
            })
        })
        .collect();
    for k in kids {
        ok(k);
    }
    assert_eq!(*t.rw.read().unwrap(), [300; 4]);
}
