//! The sync primitives' contracts, with threads and through `SharedObject` segments. Owner
//! death is a *process* dying (a forked child); a *thread* that exits holding a lock is a
//! different thing (its leaked guard may live on): see `tests/thread_death.rs`.

mod common;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmkit::sync::{
    AcquireError, Barrier, Condvar, Event, LockError, Mutex, MutexGuard, RobustSemaphore, RwLock, Semaphore, ShmSafe,
    WaitPolicy,
};
use shmkit::{SegmentError, SharedObject};

const LONG: Duration = Duration::from_secs(10);

/// A zero-filled anonymous segment holding `T`, shared with forked children.
fn shared<T: ShmSafe>(init: impl FnOnce(&mut T)) -> SharedObject<T> {
    SharedObject::<T>::anonymous(init).unwrap()
}

/// Lock `m` in a child process, which then dies holding it: the next locker gets
/// `OwnerDied`.
fn die_holding<T: Send>(m: &Mutex<T>, f: impl FnOnce(&mut T)) {
    common::in_child(|| {
        let mut g = m.lock().unwrap();
        f(&mut g);
        std::mem::forget(g);
        0
    });
}

#[test]
fn mutex_basics_and_relock_is_would_deadlock() {
    let m = Mutex::new(1u64);
    let g = m.lock().unwrap();
    assert!(matches!(m.lock(), Err(AcquireError::Lock(LockError::WouldDeadlock))));
    assert!(matches!(m.try_lock(), Err(AcquireError::Lock(LockError::WouldDeadlock))));
    assert!(matches!(m.lock_timeout(Duration::from_millis(5)), Err(AcquireError::Lock(LockError::WouldDeadlock))));
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(m.try_lock(), Err(AcquireError::Lock(LockError::WouldBlock))));
            let t = Instant::now();
            assert!(matches!(m.lock_timeout(Duration::from_millis(30)), Err(AcquireError::Lock(LockError::Timeout))));
            assert!(t.elapsed() >= Duration::from_millis(25));
        });
    });
    drop(g);
    *m.lock().unwrap() += 1;
    assert_eq!(m.into_inner(), 2);
}

#[test]
fn mutex_contended_by_threads_counts_exactly() {
    let m = Mutex::new(0u64);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..5000 {
                    *m.lock().unwrap() += 1;
                }
            });
        }
    });
    assert_eq!(*m.lock().unwrap(), 20_000);
}

#[test]
fn mutex_owner_died_then_mark_consistent_recovers() {
    let m = shared::<Mutex<[u64; 2]>>(|_| {});
    die_holding(&m, |v| v[0] = 7); // half-updated: v[1] not yet
    match m.lock_timeout(Duration::from_secs(1)) {
        Err(AcquireError::OwnerDied(mut died)) => {
            assert_eq!(**died.get_ref(), [7, 0]);
            died.get_mut()[1] = 7; // repair
            let g = died.mark_consistent().unwrap();
            assert_eq!(*g, [7, 7]);
        }
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert_eq!(*m.lock().unwrap(), [7, 7]); // consistent again: a plain guard
}

#[test]
fn mutex_owner_died_unmarked_becomes_not_recoverable_not_a_hang() {
    let m = shared::<Mutex<u32>>(|_| {});
    die_holding(&m, |v| *v = 1);
    let died = m.lock().unwrap_err();
    assert!(died.is_owner_died());
    drop(died); // dropped without mark_consistent
    for _ in 0..3 {
        let t = Instant::now();
        let r = m.lock();
        assert!(matches!(r, Err(AcquireError::Lock(LockError::NotRecoverable))), "{r:?}");
        drop(r);
        assert!(matches!(m.try_lock(), Err(AcquireError::Lock(LockError::NotRecoverable))));
        assert!(t.elapsed() < Duration::from_secs(1));
    }
    // `?` into LockError also drops the guard, and says so.
    let m2 = shared::<Mutex<u32>>(|_| {});
    die_holding(&m2, |_| {});
    let e: LockError = m2.lock().unwrap_err().into();
    assert!(matches!(e, LockError::OwnerDied), "{e}");
    assert!(e.to_string().contains("mark_consistent"));
}

#[test]
fn mutex_recover_helper_and_guard_mark_consistent() {
    let m = shared::<Mutex<u8>>(|m| *m.get_mut() = 3);
    die_holding(&m, |_| {});
    let mut g = m.lock().or_else(AcquireError::recover).unwrap();
    MutexGuard::mark_consistent(&mut g).unwrap(); // harmless again
    assert_eq!(*g, 3);
    drop(g);
    die_holding(&m, |_| {});
    let mut g = m.lock().unwrap_err();
    let AcquireError::OwnerDied(d) = g else { panic!() };
    let mut inner = d.into_inner();
    MutexGuard::mark_consistent(&mut inner).unwrap();
    drop(inner);
    g = AcquireError::Lock(LockError::WouldBlock);
    assert!(g.as_lock_error().is_some());
    assert!(m.try_lock().is_ok());
}

#[test]
fn all_zero_bytes_are_valid_primitives() {
    #[repr(C)]
    struct All {
        m: Mutex<u64>,
        rw: RwLock<u64, 4>,
        sem: Semaphore,
        rsem: RobustSemaphore<2>,
        cv: Condvar,
        ev: Event,
        bar: Barrier,
        n: AtomicU64,
    }
    // SAFETY: repr(C), ShmSafe fields only.
    unsafe impl ShmSafe for All {}
    let obj = SharedObject::<All>::anonymous(|_| {}).unwrap();
    *obj.m.lock().unwrap() += 1;
    assert_eq!(*obj.m.lock().unwrap(), 1);
    *obj.rw.write().unwrap() = 5;
    assert_eq!(*obj.rw.read().unwrap(), 5);
    assert_eq!(obj.sem.value(), 0);
    assert!(matches!(obj.sem.try_acquire(), Err(LockError::WouldBlock)));
    obj.sem.release().unwrap();
    obj.sem.acquire().unwrap();
    let (_a, _b) = (obj.rsem.acquire().unwrap(), obj.rsem.acquire().unwrap());
    assert!(matches!(obj.rsem.try_acquire(), Err(LockError::WouldDeadlock)));
    obj.cv.notify_all();
    assert!(!obj.ev.is_set());
    assert!(matches!(obj.bar.wait(), Err(LockError::Unconfigured { .. })));
    obj.n.fetch_add(1, Ordering::Relaxed);
}

#[test]
fn shared_object_named_open_and_type_checks() {
    let obj = SharedObject::<Mutex<u64>>::create(None, |m| *m.get_mut() = 41).unwrap();
    let name = obj.name().unwrap().to_owned();
    let peer = SharedObject::<Mutex<u64>>::open(&name).unwrap();
    *peer.lock().unwrap() += 1;
    assert_eq!(*obj.lock().unwrap(), 42);
    assert!(matches!(SharedObject::<Mutex<u32>>::open(&name), Err(SegmentError::TypeMismatch { .. })));
    assert!(matches!(SharedObject::<Semaphore>::open(&name), Err(SegmentError::TypeMismatch { .. })));
    assert!(matches!(shmkit::SharedValue::<u64>::open(&name), Err(SegmentError::KindMismatch { .. })));
    drop(peer);
    drop(obj);
    assert!(SharedObject::<Mutex<u64>>::open(&name).is_err(), "the creator unlinks on drop");
}

#[test]
fn rwlock_readers_share_writers_exclude() {
    let rw = RwLock::<u64, 4>::new(0);
    let r1 = rw.read().unwrap();
    assert!(matches!(rw.read(), Err(AcquireError::Lock(LockError::WouldDeadlock))));
    assert!(matches!(rw.write(), Err(AcquireError::Lock(LockError::WouldDeadlock))));
    std::thread::scope(|s| {
        s.spawn(|| {
            let r2 = rw.try_read().unwrap();
            assert_eq!(*r2, 0);
            drop(r2);
            assert!(matches!(rw.try_write(), Err(AcquireError::Lock(LockError::WouldBlock))));
            assert!(matches!(rw.write_timeout(Duration::from_millis(20)), Err(AcquireError::Lock(LockError::Timeout))));
        });
    });
    drop(r1);
    {
        let mut w = rw.write().unwrap();
        *w = 9;
        assert!(matches!(rw.read(), Err(AcquireError::Lock(LockError::WouldDeadlock))));
        std::thread::scope(|s| {
            s.spawn(|| assert!(matches!(rw.try_read(), Err(AcquireError::Lock(LockError::WouldBlock)))));
        });
    }
    // Writers and readers hammering: readers never see a torn pair.
    let pair = RwLock::<[u64; 2], 4>::new([0, 0]);
    std::thread::scope(|s| {
        for t in 0..4 {
            let pair = &pair;
            s.spawn(move || {
                for i in 0..2000u64 {
                    if (i + t) % 4 == 0 {
                        let mut w = pair.write().unwrap();
                        w[0] += 1;
                        w[1] += 1;
                    } else {
                        let r = pair.read().unwrap();
                        assert_eq!(r[0], r[1]);
                    }
                }
            });
        }
    });
    assert_eq!(pair.read().unwrap()[0], 2000);
}

#[test]
fn rwlock_more_readers_than_slots_wait_for_a_slot() {
    let rw = RwLock::<u32, 2>::new(1);
    let live = AtomicU32::new(0);
    let max = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| {
                for _ in 0..50 {
                    let g = rw.read_timeout(LONG).unwrap();
                    let n = live.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(n, Ordering::SeqCst);
                    assert_eq!(*g, 1);
                    live.fetch_sub(1, Ordering::SeqCst);
                }
            });
        }
    });
    assert!(max.load(Ordering::SeqCst) <= 2);
}

#[test]
fn rwlock_writer_death_reported_to_reader_then_recovered() {
    let rw = shared::<RwLock<[u64; 2], 4>>(|r| *r.get_mut() = [1, 1]);
    common::in_child(|| {
        let mut w = rw.write().unwrap();
        w[0] = 2;
        std::mem::forget(w);
        0
    });
    let Err(AcquireError::OwnerDied(died)) = rw.read_timeout(Duration::from_secs(1)) else { panic!("no OwnerDied") };
    assert_eq!(**died.get_ref(), [2, 1]);
    // While the owner-died read guard is held, it is exclusive.
    std::thread::scope(|s| {
        s.spawn(|| assert!(rw.try_read().is_err()));
    });
    drop(died.mark_consistent().unwrap());
    let mut w = rw.write().unwrap();
    *w = [3, 3];
    drop(w);
    // Unrepaired: not recoverable.
    common::in_child(|| {
        std::mem::forget(rw.write().unwrap());
        0
    });
    drop(rw.write().unwrap_err());
    assert!(matches!(rw.read(), Err(AcquireError::Lock(LockError::NotRecoverable))));
    assert!(matches!(rw.write(), Err(AcquireError::Lock(LockError::NotRecoverable))));
}

#[test]
fn rwlock_dead_reader_does_not_block_the_writer() {
    let rw = shared::<RwLock<u64, 4>>(|_| {});
    common::in_child(|| {
        std::mem::forget(rw.read().unwrap());
        0
    });
    let t = Instant::now();
    *rw.write_timeout(Duration::from_secs(1)).unwrap() = 1; // clean: readers change nothing
    assert!(t.elapsed() < Duration::from_millis(500));
}

#[test]
fn semaphore_counts_bounds_and_times_out() {
    let s = Semaphore::new(0);
    assert!(matches!(s.try_acquire(), Err(LockError::WouldBlock)));
    let t = Instant::now();
    assert!(matches!(s.acquire_timeout(Duration::from_millis(20)), Err(LockError::Timeout)));
    assert!(t.elapsed() >= Duration::from_millis(15));
    s.release_n(3).unwrap();
    assert_eq!(s.value(), 3);
    assert_eq!(s.limit(), None);
    let b = Semaphore::bounded(1);
    b.acquire().unwrap();
    b.release().unwrap();
    assert!(matches!(b.release(), Err(LockError::TooManyReleases { limit: 1 })));
    assert_eq!(b.value(), 1);
    // Producer / consumer across threads, with waiting consumers.
    let items = Semaphore::new(0);
    let got = AtomicU64::new(0);
    std::thread::scope(|sc| {
        for _ in 0..3 {
            sc.spawn(|| {
                for _ in 0..1000 {
                    items.acquire_timeout(LONG).unwrap();
                    got.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for _ in 0..3000 {
            items.release().unwrap();
        }
    });
    assert_eq!(got.load(Ordering::Relaxed), 3000);
    assert_eq!(items.value(), 0);
    let spin = Semaphore::new(2);
    #[allow(deprecated)] // the old shortcut still works
    spin.acquire_spin(100, Some(Duration::from_millis(1))).unwrap();
    let short = Some(Duration::from_millis(1));
    spin.acquire_with(WaitPolicy::Spin(Duration::from_micros(50)), short).unwrap();
    for policy in [WaitPolicy::Adaptive, WaitPolicy::Park, WaitPolicy::Spin(Duration::from_secs(60))] {
        assert!(matches!(spin.acquire_with(policy, short), Err(LockError::Timeout)), "{policy:?}");
    }
}

#[test]
fn robust_semaphore_recovers_a_dead_holders_permit() {
    let s = shared::<RobustSemaphore<2>>(|_| {});
    common::in_child(|| {
        std::mem::forget(s.acquire().unwrap());
        std::mem::forget(s.acquire().unwrap());
        0
    });
    let a = s.acquire_timeout(Duration::from_secs(1)).unwrap();
    let b = s.acquire_timeout(Duration::from_secs(1)).unwrap();
    assert!(a.recovered() && b.recovered());
    assert_ne!(a.slot(), b.slot());
    std::thread::scope(|sc| {
        sc.spawn(|| assert!(matches!(s.acquire_timeout(Duration::from_millis(20)), Err(LockError::Timeout))));
    });
    drop(a);
    let c = s.acquire().unwrap();
    assert!(!c.recovered());
}

#[test]
fn condvar_wakes_waiters_and_times_out() {
    let state = Mutex::new(0u32);
    let cv = Condvar::new();
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                let g = cv.wait_timeout_while(state.lock().unwrap(), LONG, |v| *v == 0).unwrap();
                assert!(!g.1.timed_out());
            });
        }
        std::thread::sleep(Duration::from_millis(20));
        *state.lock().unwrap() = 1;
        cv.notify_all();
    });
    // notify_one: ping-pong between two threads through the condition.
    let turn = Mutex::new(0u64);
    std::thread::scope(|s| {
        for me in 0..2u64 {
            let (turn, cv) = (&turn, &cv);
            s.spawn(move || {
                for _ in 0..500 {
                    let mut g = cv.wait_while(turn.lock().unwrap(), |t| *t % 2 != me).unwrap();
                    *g += 1;
                    drop(g);
                    cv.notify_one();
                }
            });
        }
    });
    assert_eq!(*turn.lock().unwrap(), 1000);
    let t = Instant::now();
    let (_g, r) = cv.wait_timeout(state.lock().unwrap(), Duration::from_millis(20)).unwrap();
    assert!(r.timed_out() && t.elapsed() >= Duration::from_millis(15));
}

#[test]
fn condvar_relock_reports_owner_death() {
    #[repr(C)]
    struct Pair {
        m: Mutex<u32>,
        cv: Condvar,
    }
    // SAFETY: #[repr(C)], made only of ShmSafe fields.
    unsafe impl ShmSafe for Pair {}
    let p = shared::<Pair>(|_| {});
    std::thread::scope(|s| {
        let waiter = s.spawn(|| match p.cv.wait_timeout_while(p.m.lock().unwrap(), LONG, |v| *v == 0) {
            Err(AcquireError::OwnerDied(d)) => {
                drop(d.mark_consistent().unwrap());
                "owner died"
            }
            Ok(_) => "ok",
            Err(AcquireError::Lock(_)) => "error",
        });
        std::thread::sleep(Duration::from_millis(20));
        common::in_child(|| {
            let mut g = p.m.lock().unwrap();
            *g = 1;
            p.cv.notify_all();
            std::mem::forget(g); // the process exits holding the mutex
            0
        });
        assert_eq!(waiter.join().unwrap(), "owner died");
    });
}

#[test]
fn event_set_clear_wait_and_pulse() {
    let ev = Event::new();
    assert!(!ev.wait_timeout(Duration::from_millis(5)));
    std::thread::scope(|s| {
        let w = s.spawn(|| ev.wait_timeout(LONG));
        std::thread::sleep(Duration::from_millis(10));
        ev.set();
        ev.clear(); // a pulse: the waiter that was released still returns true
        assert!(w.join().unwrap());
    });
    assert!(!ev.is_set());
    ev.set();
    ev.set();
    ev.wait();
    assert!(ev.wait_timeout(Duration::ZERO));
}

#[test]
fn barrier_rounds_indices_abort_and_reset() {
    let b = Barrier::new(3);
    std::thread::scope(|s| {
        let hs: Vec<_> =
            (0..3).map(|_| s.spawn(|| (0..100).map(|_| b.wait_timeout(LONG).unwrap()).collect::<Vec<_>>())).collect();
        let all: Vec<Vec<usize>> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        for round in 0..100 {
            let mut idx: Vec<usize> = all.iter().map(|v| v[round]).collect();
            idx.sort();
            assert_eq!(idx, [0, 1, 2]);
        }
    });
    // A timed-out wait breaks it for everybody; abort too; reset repairs.
    std::thread::scope(|s| {
        let other = s.spawn(|| b.wait_timeout(LONG));
        let t = Instant::now();
        assert!(matches!(b.wait_timeout(Duration::from_millis(30)), Err(LockError::Timeout)));
        assert!(matches!(other.join().unwrap(), Err(LockError::Broken)));
        assert!(t.elapsed() < Duration::from_secs(2));
    });
    assert!(b.is_broken());
    b.reset();
    assert!(!b.is_broken());
    assert_eq!(b.n_waiting(), 0);
    std::thread::scope(|s| {
        let w = s.spawn(|| b.wait_timeout(LONG));
        std::thread::sleep(Duration::from_millis(10));
        b.reset(); // current waiters get Broken, the barrier stays usable
        assert!(matches!(w.join().unwrap(), Err(LockError::Broken)));
        let w = s.spawn(|| b.wait_timeout(LONG));
        std::thread::sleep(Duration::from_millis(10));
        b.abort();
        assert!(matches!(w.join().unwrap(), Err(LockError::Broken)));
    });
    b.reset();
    let d = Barrier::with_timeout(2, Duration::from_millis(10));
    assert!(matches!(d.wait(), Err(LockError::Timeout)));
}

#[test]
fn raw_mutex_trylock_on_not_recoverable_does_not_strand_other_lockers() {
    use shmkit::sync::{Acquired, RawMutex};
    let mut slot = Box::new(std::mem::MaybeUninit::<RawMutex>::uninit());
    // SAFETY: the box is valid, aligned, and not shared yet.
    unsafe { RawMutex::init(slot.as_mut_ptr()) }.unwrap();
    // SAFETY: initialised just above.
    let m: &RawMutex = unsafe { slot.assume_init_ref() };
    std::thread::scope(|s| {
        s.spawn(|| assert_eq!(m.lock().unwrap(), Acquired::Clean)); // exits holding it
    });
    assert_eq!(m.lock().unwrap(), Acquired::OwnerDied);
    // SAFETY: held by this thread; released without mark_consistent: not recoverable.
    unsafe { m.unlock() };
    // glibc's trylock would keep the lock word here; RawMutex gives it back.
    assert!(matches!(m.try_lock(), Err(LockError::NotRecoverable)));
    std::thread::scope(|s| {
        s.spawn(|| {
            let deadline = Duration::from_secs(2);
            let t = Instant::now();
            let r = m.try_lock();
            assert!(matches!(r, Err(LockError::NotRecoverable)), "{r:?}");
            let r = m.lock();
            assert!(matches!(r, Err(LockError::NotRecoverable)), "{r:?}");
            assert!(t.elapsed() < deadline);
        });
    });
}

/// The lazy mutex's state word while process `pid` initialises it.
fn initialising(pid: u32) -> u32 {
    0x8000_0000 | pid
}

#[test]
fn lock_whose_initialiser_died_mid_init_is_taken_over() {
    use shmkit::sync::LazyRawMutex;
    let obj = SharedObject::<LazyRawMutex>::anonymous(|_| {}).unwrap();
    // A process that claimed the one-time initialisation (the state word, the first
    // field) and died before publishing it: a reaped child.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    // SAFETY: the state word is the first, 4-aligned u32 of the object, and only ever
    // accessed atomically.
    let state = unsafe { &*obj.segment().as_ptr().cast::<AtomicU32>() };
    state.store(initialising(dead), Ordering::SeqCst);
    let t = Instant::now();
    assert_eq!(obj.lock().unwrap(), shmkit::sync::Acquired::Clean);
    assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());
    // SAFETY: this thread holds it.
    unsafe { obj.unlock() };
    state.store(77, Ordering::SeqCst);
    assert!(matches!(obj.try_lock(), Err(LockError::Corrupt)));
}

#[test]
fn lock_whose_initialiser_is_stopped_waits_for_it_until_the_deadline_only() {
    use shmkit::sync::{INIT_STALL, LazyRawMutex};
    let obj = SharedObject::<LazyRawMutex>::anonymous(|_| {}).unwrap();
    // A live process (stopped, as far as we know) owns the initialisation: never taken over.
    let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let live = child.id();
    // SAFETY: as above.
    let state = unsafe { &*obj.segment().as_ptr().cast::<AtomicU32>() };
    state.store(initialising(live), Ordering::SeqCst);
    let t = Instant::now();
    let r = obj.try_lock();
    assert!(matches!(r, Err(LockError::InitStalled { pid }) if pid == live), "{r:?}");
    assert!(t.elapsed() < Duration::from_millis(50), "try_lock took {:?}", t.elapsed());
    let t = Instant::now();
    let r = obj.lock_timeout(Duration::from_millis(100));
    assert!(matches!(r, Err(LockError::InitStalled { pid }) if pid == live), "{r:?}");
    assert!(t.elapsed() < Duration::from_millis(150), "lock_timeout took {:?}", t.elapsed());
    let t = Instant::now();
    assert!(matches!(obj.lock(), Err(LockError::InitStalled { .. })));
    assert!(t.elapsed() >= INIT_STALL && t.elapsed() < INIT_STALL * 3, "{:?}", t.elapsed());
    assert_eq!(state.load(Ordering::SeqCst), initialising(live), "never taken over while it lives");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(obj.lock_timeout(Duration::from_secs(5)).is_ok(), "taken over once the initialiser ended");
    // SAFETY: this thread holds it.
    unsafe { obj.unlock() };
}
