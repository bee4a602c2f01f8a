//! Robust locks and semaphores against the raw OS floor.
//!
//! | figure | what |
//! |---|---|
//! | `mutex_uncontended` / `floor_pthread_robust_uncontended` | lock; counter += 1; unlock, one process: ns |
//! | `mutex_contended_2p` / `floor_pthread_robust_contended_2p` | 2 processes, one per CPU, x 5 M (lock; counter += 1; unlock): Mops/s |
//!
//! Semaphores, events and barriers (ping-pong and oversubscribed figures) are in `wait.rs`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shmkit::shared::SharedObject;
use shmkit::sync::Mutex;

use crate::util::{Harness, SharedPage, fork_on, median, reap_child, time_iters};

pub fn run(h: &mut Harness) {
    h.group("sync");
    // Parent on CPU 0, forked peers on CPU 1, as every cross-process figure here.
    crate::util::pinned(|| run_pinned(h));
}

fn run_pinned(h: &Harness) {
    if h.wants_any(&["mutex_uncontended", "floor_pthread_robust_uncontended"]) {
        uncontended(h);
    }
    if h.wants_any(&["mutex_contended_2p", "floor_pthread_robust_contended_2p"]) {
        contended(h);
    }
}

/// The floor: a raw `PTHREAD_PROCESS_SHARED | PTHREAD_MUTEX_ROBUST` mutex and a counter in
/// a shared page, laid out as `Mutex<u64>` lays them out (the counter right after the lock,
/// in the same cache line), so both do exactly the same memory traffic.
struct RawRobust {
    page: SharedPage,
}

impl RawRobust {
    fn new() -> Self {
        let page = SharedPage::new(4096);
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: attr is initialised before use and destroyed once; the mutex lives at the
        // start of a fresh, aligned shared page nobody else uses yet.
        unsafe {
            libc::pthread_mutexattr_init(attr.as_mut_ptr());
            libc::pthread_mutexattr_setpshared(attr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED);
            libc::pthread_mutexattr_setrobust(attr.as_mut_ptr(), libc::PTHREAD_MUTEX_ROBUST);
            assert_eq!(libc::pthread_mutex_init(page.ptr().cast(), attr.as_ptr()), 0);
            libc::pthread_mutexattr_destroy(attr.as_mut_ptr());
        }
        RawRobust { page }
    }

    fn increment(&self) {
        let m = self.page.ptr().cast::<libc::pthread_mutex_t>();
        let counter = self.page.ptr().wrapping_add(COUNTER_OFFSET).cast::<u64>();
        // SAFETY: an initialised robust mutex guarding the counter in the same page; the
        // counter is only touched between lock and unlock.
        unsafe {
            libc::pthread_mutex_lock(m);
            *counter += 1;
            libc::pthread_mutex_unlock(m);
        }
    }
}

/// Where `Mutex<u64>` keeps its value: after a 4-byte state word (padded to 8) and the
/// pthread mutex.
const COUNTER_OFFSET: usize = 8 + std::mem::size_of::<libc::pthread_mutex_t>();

fn uncontended(h: &Harness) {
    let ours = SharedObject::<Mutex<u64>>::anonymous(|_| {}).expect("mutex segment");
    let floor = RawRobust::new();
    let r = h.interleaved(
        15,
        200_000,
        "ns",
        &mut [
            ("mutex_uncontended", &mut |n| time_iters(n, |_| *ours.lock().expect("lock") += 1)),
            ("floor_pthread_robust_uncontended", &mut |n| time_iters(n, |_| floor.increment())),
        ],
    );
    h.ratio("mutex_uncontended_vs_floor", r[0], r[1]);
}

/// Two processes, one per CPU, each doing `iters` increments, released together; total
/// Mops/s. (The parent only waits.)
fn two_processes(iters: usize, work: &dyn Fn()) -> f64 {
    let flags = SharedPage::new(4096);
    // SAFETY: zeroed, aligned, shared with the children and outliving them.
    let (ready, go) = unsafe { (&*flags.ptr().cast::<AtomicU32>(), &*flags.ptr().add(64).cast::<AtomicU32>()) };
    let kids: Vec<_> = (0..2)
        .map(|cpu| {
            fork_on(Some(cpu), || {
                ready.fetch_add(1, Ordering::AcqRel);
                while go.load(Ordering::Acquire) == 0 {
                    std::hint::spin_loop();
                }
                for _ in 0..iters {
                    work();
                }
            })
        })
        .collect();
    while ready.load(Ordering::Acquire) < 2 {
        std::thread::sleep(Duration::from_micros(100));
    }
    let start = Instant::now();
    go.store(1, Ordering::Release);
    for k in kids {
        reap_child(k);
    }
    (2 * iters) as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn contended(h: &Harness) {
    const ITERS: usize = 5_000_000;
    const ROUNDS: usize = 9;
    let ours = SharedObject::<Mutex<u64>>::anonymous(|_| {}).expect("mutex segment");
    let floor = RawRobust::new();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        a.push(two_processes(ITERS, &|| *ours.lock().expect("lock") += 1));
        b.push(two_processes(ITERS, &|| floor.increment()));
    }
    let (a, b) = (median(&mut a), median(&mut b));
    if h.wants("mutex_contended_2p") {
        h.report("mutex_contended_2p", a, "Mops/s");
    }
    if h.wants("floor_pthread_robust_contended_2p") {
        h.report("floor_pthread_robust_contended_2p", b, "Mops/s");
    }
    h.ratio("mutex_contended_2p_vs_floor", Some(a), Some(b));
}
