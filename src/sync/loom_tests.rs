//! Model checks of the futex-based algorithms under loom, threads standing in for
//! processes. Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --lib loom
//! ```
//!
//! The futex is emulated (see `shim`): a lost wake-up makes every thread block, which loom
//! reports as a deadlock; a finite deadline is modelled as expiring at once.

use std::time::Duration;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

use super::park::ParkWord;
use super::{Barrier, Event, LockError, Semaphore};
use crate::sys::Deadline;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

/// Run `f` on a thread of its own, with its own handle to `shared`.
fn spawn_with<T, R>(shared: &Arc<T>, f: impl FnOnce(Arc<T>) -> R + Send + 'static) -> thread::JoinHandle<R>
where
    T: Send + Sync + 'static,
    R: Send + 'static,
{
    let shared = Arc::clone(shared);
    thread::spawn(move || f(shared))
}

/// Run `f` on each of `n` threads, each with its own handle to `shared`.
fn spawn_each<T, R>(
    n: usize,
    shared: &Arc<T>,
    f: impl Fn(Arc<T>) -> R + Clone + Send + 'static,
) -> Vec<thread::JoinHandle<R>>
where
    T: Send + Sync + 'static,
    R: Send + 'static,
{
    (0..n).map(|_| spawn_with(shared, f.clone())).collect()
}

/// Join every thread, in order, returning their results.
fn join_all<R>(threads: Vec<thread::JoinHandle<R>>) -> Vec<R> {
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn loom_semaphore_wakes_every_waiter() {
    model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let waiters = spawn_each(2, &sem, |sem| sem.acquire().unwrap());
        sem.release().unwrap();
        sem.release().unwrap();
        join_all(waiters);
        assert_eq!(sem.value(), 0);
    });
}

#[test]
fn loom_semaphore_excludes_and_conserves_permits() {
    model(|| {
        let shared = Arc::new((Semaphore::bounded(1), AtomicUsize::new(0)));
        let workers = spawn_each(2, &shared, |shared| {
            let (sem, inside) = &*shared;
            sem.acquire().unwrap();
            assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders of one permit");
            inside.fetch_sub(1, Ordering::SeqCst);
            sem.release().unwrap();
        });
        join_all(workers);
        let sem = &shared.0;
        assert_eq!(sem.value(), 1);
        assert!(matches!(sem.release(), Err(LockError::TooManyReleases { limit: 1 })));
    });
}

#[test]
fn loom_semaphore_timed_out_waiter_never_swallows_a_wakeup() {
    model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let sleeper = spawn_with(&sem, |sem| sem.acquire().unwrap());
        let timed = spawn_with(&sem, |sem| sem.acquire_timeout(Duration::from_secs(1)).is_ok());
        sem.release().unwrap();
        let got = timed.join().unwrap();
        if got {
            sem.release().unwrap(); // the untimed sleeper still needs one
        }
        sleeper.join().unwrap();
        assert_eq!(sem.value(), 0);
    });
}

#[test]
fn loom_event_set_clear_set_wakes_the_waiter() {
    // (A waiter that starts after a set–clear pulse rightly blocks, so the model ends
    // with a set; the pulse itself is tested with real threads in tests/sync_api.rs.)
    model(|| {
        let ev = Arc::new(Event::new());
        let waiter = spawn_with(&ev, |ev| ev.wait());
        ev.set();
        ev.clear();
        ev.set();
        waiter.join().unwrap();
    });
}

#[test]
fn loom_event_two_waiters_one_set() {
    model(|| {
        let ev = Arc::new(Event::new());
        let ws = spawn_each(2, &ev, |ev| ev.wait());
        ev.set();
        join_all(ws);
        assert!(ev.is_set());
    });
}

#[test]
fn loom_barrier_round_gives_distinct_indices() {
    model(|| {
        let b = Arc::new(Barrier::new(3));
        let ws = spawn_each(2, &b, |b| b.wait().unwrap());
        let mut idx = vec![b.wait().unwrap()];
        idx.extend(join_all(ws));
        idx.sort();
        assert_eq!(idx, [0, 1, 2]);
        assert_eq!(b.n_waiting(), 0);
    });
}

#[test]
fn loom_barrier_abort_and_timeout_reach_every_waiter() {
    model(|| {
        let b = Arc::new(Barrier::new(3));
        let w = spawn_with(&b, |b| b.wait());
        let timed = spawn_with(&b, |b| b.wait_timeout(Duration::from_secs(1)));
        b.abort();
        assert!(matches!(w.join().unwrap(), Err(LockError::Broken | LockError::Timeout)));
        assert!(matches!(timed.join().unwrap(), Err(LockError::Broken | LockError::Timeout)));
        assert!(b.is_broken());
    });
}

#[test]
fn loom_barrier_reset_breaks_the_waiting_round_then_works() {
    model(|| {
        let b = Arc::new(Barrier::new(2));
        let w = spawn_with(&b, |b| {
            let first = b.wait();
            (first, b.wait())
        });
        while b.n_waiting() != 1 {
            thread::yield_now();
        }
        b.reset();
        let mine = b.wait().unwrap();
        let (first, second) = w.join().unwrap();
        assert!(matches!(first, Err(LockError::Broken)));
        assert_eq!(second.unwrap() + mine, 1);
    });
}

#[test]
fn loom_parkword_condvar_pattern_never_loses_a_notify() {
    model(|| {
        let park = Arc::new(ParkWord::new());
        let ready = Arc::new(loom::sync::Mutex::new(false));
        let waiter = {
            let (park, ready) = (Arc::clone(&park), Arc::clone(&ready));
            thread::spawn(move || {
                let mut g = ready.lock().unwrap();
                while !*g {
                    let seq = park.prepare();
                    drop(g);
                    park.park(seq, &Deadline::never(), None);
                    park.done();
                    g = ready.lock().unwrap();
                }
            })
        };
        *ready.lock().unwrap() = true;
        park.notify(1);
        waiter.join().unwrap();
    });
}
