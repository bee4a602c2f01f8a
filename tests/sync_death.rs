//! Death tests with real processes: children are SIGKILLed while holding, waiting for or
//! using a primitive, and the survivors must get a clear outcome within a bounded time.
//! Every wait has a timeout, so a bug fails a test instead of hanging it.
//!
//! Children are re-executions of this test binary (`child_role`), except in the glibc
//! tst-robust8-style hammer, which forks 400 children and does so holding
//! `common::serial()` (as does every test here, so no other test thread runs meanwhile).
//! Only the parent creates segments; children open them by name and never create one.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Exit, fork_child, kill, spawn_role, unique_name, wait_child, wait_pid, wait_until};
use shmkit::SharedObject;
use shmkit::sync::{AcquireError, Barrier, Condvar, LockError, Mutex, RobustSemaphore, RwLock, Semaphore, ShmSafe};

const NAME_VAR: &str = "SHMKIT_TEST_ARENA";
const MUTEXES: usize = 32;
const SECOND: Duration = Duration::from_secs(1);
const CHILD_WAIT: Duration = Duration::from_secs(10);

/// Everything the tests share with their children, in one zero-filled segment.
#[repr(C)]
struct Arena {
    mutexes: [Mutex<[u64; 2]>; MUTEXES],
    flag: AtomicU64,
    started: AtomicU64,
    /// The pids of the running round's two hammers.
    hammers: [AtomicU32; 2],
    rw: RwLock<[u64; 2], 4>,
    cv_state: Mutex<u64>,
    cv: Condvar,
    barrier: Barrier,
    rsem: RobustSemaphore<1>,
    sem: Semaphore,
}

// SAFETY: #[repr(C)], made only of ShmSafe fields.
unsafe impl ShmSafe for Arena {}

fn arena(tag: &str, init: impl FnOnce(&mut Arena)) -> SharedObject<Arena> {
    SharedObject::<Arena>::create(Some(&unique_name(tag)), init).expect("create arena")
}

fn spawn(role: &str, arena: &SharedObject<Arena>) -> std::process::Child {
    spawn_role("child_role", role, &[(NAME_VAR, arena.name().expect("named"))])
}

fn wait_flag(arena: &Arena, value: u64) {
    wait_until("the child to signal", CHILD_WAIT, || arena.flag.load(Ordering::SeqCst) >= value);
}

fn kill_child(child: &mut std::process::Child) {
    let _ = child.kill(); // SIGKILL
    assert_eq!(wait_child(child, CHILD_WAIT), Exit::Signal(libc::SIGKILL));
}

/// Entry point of re-executed children.
#[test]
#[ignore = "child process role, run by the other tests"]
fn child_role() {
    let Some(role) = common::role() else { return };
    let a = SharedObject::<Arena>::open(&std::env::var(NAME_VAR).unwrap()).unwrap();
    let forever = || std::thread::sleep(Duration::from_secs(60));
    match role.as_str() {
        "hold_mutex" => {
            let mut g = a.mutexes[0].lock().unwrap();
            g[0] = 7; // half-updated: g[1] still 0
            a.flag.store(1, Ordering::SeqCst);
            forever();
        }
        "expect_not_recoverable" => {
            let code = match a.mutexes[0].lock_timeout(SECOND) {
                Err(AcquireError::Lock(LockError::NotRecoverable)) => 0,
                _ => 3,
            };
            std::process::exit(code);
        }
        "count" => {
            for _ in 0..2000 {
                a.mutexes[1].lock().unwrap()[0] += 1;
            }
        }
        "rw_read" => {
            let _g = a.rw.read().unwrap();
            a.flag.store(1, Ordering::SeqCst);
            forever();
        }
        "rw_write" => {
            let mut g = a.rw.write().unwrap();
            g[0] = 5;
            a.flag.store(1, Ordering::SeqCst);
            forever();
        }
        "rw_write_waiting" => {
            a.flag.store(1, Ordering::SeqCst);
            let _g = a.rw.write().unwrap(); // blocks: the parent reads
            std::process::exit(3);
        }
        "cv_wait" => {
            let g = a.cv_state.lock().unwrap();
            a.flag.fetch_add(1, Ordering::SeqCst);
            let code = match a.cv.wait_timeout_while(g, CHILD_WAIT, |v| *v == 0) {
                Ok((g, r)) if !r.timed_out() && *g == 1 => 0,
                _ => 3,
            };
            std::process::exit(code);
        }
        "cv_hold" => {
            let mut g = a.cv_state.lock().unwrap();
            *g = 1;
            a.cv.notify_all();
            a.flag.store(1, Ordering::SeqCst);
            forever();
        }
        "barrier_arrive" => {
            let code = match a.barrier.wait_timeout(SECOND) {
                Ok(_) => 0,
                Err(LockError::Broken) => 10,
                Err(LockError::Timeout) => 11,
                Err(_) => 12,
            };
            std::process::exit(code);
        }
        "barrier_arrive_long" => {
            let _ = a.barrier.wait_timeout(CHILD_WAIT);
            std::process::exit(3); // must be killed while waiting
        }
        "never_arrive" => {
            a.flag.store(1, Ordering::SeqCst);
            forever();
        }
        "rsem_hold" => {
            let p = a.rsem.acquire().unwrap();
            a.flag.store(1, Ordering::SeqCst);
            forever();
            drop(p);
        }
        "sem_hold" => {
            a.sem.acquire().unwrap();
            a.flag.store(1, Ordering::SeqCst);
            forever();
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn mutex_holder_killed_next_locker_gets_owner_died_within_a_second_and_recovers() {
    let _serial = common::serial();
    let a = arena("mdeath", |_| {});
    let mut child = spawn("hold_mutex", &a);
    wait_flag(&a, 1);
    kill_child(&mut child);
    let t = Instant::now();
    match a.mutexes[0].lock_timeout(SECOND) {
        Err(AcquireError::OwnerDied(mut died)) => {
            assert!(t.elapsed() < SECOND);
            assert_eq!(**died.get_ref(), [7, 0], "the dead owner's half-update is visible");
            died.get_mut()[1] = 7;
            drop(died.mark_consistent().unwrap());
        }
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert_eq!(*a.mutexes[0].lock_timeout(SECOND).unwrap(), [7, 7]);
}

#[test]
fn mutex_owner_died_unrepaired_is_not_recoverable_in_every_process() {
    let _serial = common::serial();
    let a = arena("mnotrec", |_| {});
    let mut child = spawn("hold_mutex", &a);
    wait_flag(&a, 1);
    kill_child(&mut child);
    let died = a.mutexes[0].lock_timeout(SECOND).unwrap_err();
    assert!(died.is_owner_died());
    drop(died); // not marked consistent
    let mut other = spawn("expect_not_recoverable", &a);
    assert_eq!(wait_child(&mut other, CHILD_WAIT), Exit::Code(0));
    assert!(matches!(a.mutexes[0].try_lock(), Err(AcquireError::Lock(LockError::NotRecoverable))));
}

#[test]
fn zero_filled_mutex_initialises_once_under_a_cross_process_race() {
    let _serial = common::serial();
    let a = arena("mrace", |_| {});
    let mut kids: Vec<_> = (0..3).map(|_| spawn("count", &a)).collect();
    for _ in 0..2000 {
        a.mutexes[1].lock().unwrap()[0] += 1;
    }
    for k in &mut kids {
        assert_eq!(wait_child(k, CHILD_WAIT), Exit::Code(0));
    }
    assert_eq!(a.mutexes[1].lock().unwrap()[0], 8000);
}

/// A tiny xorshift generator: no dependency, different per child.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Write `msg` to stderr from a forked child: one `write(2)`, no lock that another
/// thread of the parent may have held at the fork (the test harness captures `eprintln!`).
fn child_says(msg: &str) {
    // SAFETY: writes `msg.len()` bytes from a live buffer to fd 2.
    let _ = unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
}

/// A forked child, hammer `k` of its round: lock, try_lock and lock_timeout random mutexes
/// for ever; a clean acquisition must always find the pair consistent.
///
/// Its sibling may be killed first (the parent kills them one after the other). While the
/// sibling's process is still exiting — its threads are dead and the kernel has marked its
/// locks owner-died, but the process has not ended — a `try_lock`, or a `lock_timeout`
/// shorter than that exit, gets `AbandonedByThread { pid: sibling }`: it cannot tell the
/// death of a thread from that of a process it does not wait for (see
/// `thread_death::a_killed_owner_that_takes_long_to_exit_is_not_mistaken_for_a_live_one`).
/// That is the contract, and it is transient. `lock()` waits for the exit and must get
/// `OwnerDied`; nothing may name this process or another one.
fn hammer(a: &Arena, k: usize, seed: u64) -> i32 {
    let mut rng = Rng(seed | 1);
    a.hammers[k].store(std::process::id(), Ordering::SeqCst);
    a.started.fetch_add(1, Ordering::SeqCst);
    let sibling = || a.hammers[1 - k].load(Ordering::SeqCst);
    loop {
        let m = &a.mutexes[(rng.next() % MUTEXES as u64) as usize];
        let call = rng.next() % 3;
        let got = match call {
            0 => m.lock(),
            1 => m.try_lock(),
            _ => m.lock_timeout(Duration::from_micros(rng.next() % 200)),
        };
        let mut g = match got {
            Ok(g) => {
                if g[0] != g[1] {
                    return 3; // a clean lock over torn data: robustness is broken
                }
                g
            }
            Err(AcquireError::OwnerDied(mut d)) => {
                let v = d.get_mut();
                v[1] = v[0];
                match d.mark_consistent() {
                    Ok(g) => g,
                    Err(_) => return 4,
                }
            }
            Err(AcquireError::Lock(LockError::WouldBlock | LockError::Timeout)) => continue,
            Err(AcquireError::Lock(LockError::AbandonedByThread { pid })) if call != 0 && pid == sibling() => continue,
            Err(AcquireError::Lock(e)) => {
                child_says(&format!(
                    "hammer {}: {} failed: {e:?}\n",
                    std::process::id(),
                    ["lock", "try_lock", "lock_timeout"][call as usize]
                ));
                return 5;
            }
        };
        g[0] += 1;
        for _ in 0..(rng.next() % 64) {
            std::hint::spin_loop();
        }
        g[1] += 1;
    }
}

#[test]
fn robust8_style_children_killed_at_random_never_lose_a_lock() {
    let _serial = common::serial();
    let a = arena("robust8", |_| {});
    drop(a.mutexes[0].lock().unwrap()); // initialise this thread's lock bookkeeping before forking
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ std::process::id() as u64);
    let (mut owner_died, mut clean) = (0u64, 0u64);
    let start = Instant::now();
    for round in 0..200u64 {
        let pids: Vec<_> = (0..2)
            .map(|k| {
                let seed = rng.next() ^ (round * 2 + k as u64);
                let arena: &Arena = &a;
                fork_child(move || hammer(arena, k, seed))
            })
            .collect();
        wait_until("hammers to start", CHILD_WAIT, || a.started.load(Ordering::SeqCst) >= 2 * (round + 1));
        std::thread::sleep(Duration::from_micros(rng.next() % 1500));
        for &pid in &pids {
            kill(pid, libc::SIGKILL);
            // Every other round, the second hammer outlives the first for a while (as a
            // preempted parent makes it do by chance) and meets its locks mid-exit.
            if round % 2 == 1 {
                std::thread::sleep(Duration::from_micros(rng.next() % 2000));
            }
        }
        for &pid in &pids {
            assert_eq!(wait_pid(pid, CHILD_WAIT), Exit::Signal(libc::SIGKILL), "round {round}: a hammer failed");
        }
        for (i, m) in a.mutexes.iter().enumerate() {
            let t = Instant::now();
            match m.lock_timeout(SECOND) {
                Ok(g) => {
                    assert_eq!(g[0], g[1], "round {round}, mutex {i}: clean lock over torn data");
                    clean += 1;
                }
                Err(AcquireError::OwnerDied(mut d)) => {
                    let v = d.get_mut();
                    v[1] = v[0];
                    drop(d.mark_consistent().unwrap());
                    owner_died += 1;
                }
                Err(AcquireError::Lock(e)) => panic!("round {round}, mutex {i}: lost lock: {e}"),
            }
            assert!(t.elapsed() < SECOND);
        }
    }
    eprintln!("robust8: 200 rounds, {owner_died} owner-died recoveries, {clean} clean, {:?}", start.elapsed());
    assert!(owner_died > 0, "the kills never hit a holder; the test is not testing anything");
}

#[test]
fn barrier_party_killed_before_arriving_breaks_it_for_everyone_within_their_timeout() {
    let _serial = common::serial();
    let a = arena("bdeath", |a| a.barrier = Barrier::new(3));
    let mut absent = spawn("never_arrive", &a);
    wait_flag(&a, 1);
    kill_child(&mut absent);
    let t = Instant::now();
    let mut waiter = spawn("barrier_arrive", &a);
    let mine = a.barrier.wait_timeout(SECOND);
    let theirs = wait_child(&mut waiter, CHILD_WAIT);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // Whoever timed out first broke the barrier; the other saw it broken.
    match (mine, theirs) {
        (Err(LockError::Timeout), Exit::Code(10)) | (Err(LockError::Broken), Exit::Code(11)) => {}
        other => panic!("unexpected outcomes {other:?}"),
    }
    assert!(a.barrier.is_broken());
    a.barrier.reset();
    assert!(!a.barrier.is_broken());
}

#[test]
fn barrier_party_killed_after_arriving_still_counts() {
    let _serial = common::serial();
    let a = arena("barrived", |a| a.barrier = Barrier::new(2));
    let mut early = spawn("barrier_arrive_long", &a);
    wait_until("the child to arrive", CHILD_WAIT, || a.barrier.n_waiting() == 1);
    kill_child(&mut early);
    assert_eq!(a.barrier.wait_timeout(SECOND).unwrap(), 1);
}

#[test]
fn rwlock_reader_killed_while_reading_does_not_block_writers() {
    let _serial = common::serial();
    let a = arena("rwreader", |_| {});
    let mut child = spawn("rw_read", &a);
    wait_flag(&a, 1);
    assert!(matches!(a.rw.try_write(), Err(AcquireError::Lock(LockError::WouldBlock))));
    kill_child(&mut child);
    let t = Instant::now();
    *a.rw.write_timeout(SECOND).unwrap() = [1, 1]; // clean: a reader changes nothing
    assert!(t.elapsed() < SECOND);
}

#[test]
fn rwlock_writer_killed_mid_write_reports_owner_died_to_the_next_reader() {
    let _serial = common::serial();
    let a = arena("rwwriter", |_| {});
    let mut child = spawn("rw_write", &a);
    wait_flag(&a, 1);
    kill_child(&mut child);
    match a.rw.read_timeout(SECOND) {
        Err(AcquireError::OwnerDied(died)) => {
            assert_eq!(**died.get_ref(), [5, 0]);
            drop(died.mark_consistent().unwrap());
        }
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    let mut w = a.rw.write_timeout(SECOND).unwrap(); // clean again
    *w = [6, 6];
}

#[test]
fn rwlock_writer_killed_while_waiting_for_readers_leaves_it_clean() {
    let _serial = common::serial();
    let a = arena("rwdrain", |_| {});
    let r = a.rw.read().unwrap();
    let mut child = spawn("rw_write_waiting", &a);
    wait_flag(&a, 1);
    std::thread::sleep(Duration::from_millis(100)); // let it take the gate and wait
    kill_child(&mut child);
    drop(r);
    assert!(a.rw.write_timeout(SECOND).is_ok(), "no owner-died: the data was never touched");
    assert!(a.rw.read_timeout(SECOND).is_ok());
}

#[test]
fn condvar_waiter_killed_while_waiting_others_are_still_notified() {
    let _serial = common::serial();
    let a = arena("cvwaiter", |_| {});
    let mut victim = spawn("cv_wait", &a);
    wait_flag(&a, 1);
    kill_child(&mut victim);
    let mut survivor = spawn("cv_wait", &a);
    wait_flag(&a, 2);
    *a.cv_state.lock_timeout(SECOND).unwrap() = 1; // after the survivor released it in wait
    a.cv.notify_all();
    assert_eq!(wait_child(&mut survivor, CHILD_WAIT), Exit::Code(0));
}

#[test]
fn condvar_mutex_holder_killed_waiter_relock_reports_owner_died() {
    let _serial = common::serial();
    let a = arena("cvholder", |_| {});
    let waiting = AtomicBool::new(false);
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let g = a.cv_state.lock().unwrap();
            waiting.store(true, Ordering::SeqCst); // still held: the child can lock only once we wait
            match a.cv.wait_timeout_while(g, CHILD_WAIT, |v| *v == 0) {
                Err(AcquireError::OwnerDied(d)) => {
                    let g = d.mark_consistent().unwrap();
                    assert_eq!(*g, 1);
                    true
                }
                _ => false,
            }
        });
        wait_until("the waiter", CHILD_WAIT, || waiting.load(Ordering::SeqCst));
        let mut child = spawn("cv_hold", &a);
        wait_flag(&a, 1);
        kill_child(&mut child);
        assert!(waiter.join().unwrap(), "the waiter must see the holder's death");
    });
}

#[test]
fn robust_semaphore_permit_of_a_killed_holder_comes_back() {
    let _serial = common::serial();
    let a = arena("rsem", |_| {});
    let mut child = spawn("rsem_hold", &a);
    wait_flag(&a, 1);
    assert!(matches!(a.rsem.try_acquire(), Err(LockError::WouldBlock)));
    let t = Instant::now();
    std::thread::scope(|s| {
        let taker = s.spawn(|| a.rsem.acquire_timeout(SECOND * 5).map(|p| p.recovered()));
        std::thread::sleep(Duration::from_millis(50)); // the taker is asleep now
        kill_child(&mut child);
        assert!(taker.join().unwrap().unwrap(), "the permit must come back, marked recovered");
    });
    assert!(t.elapsed() < SECOND, "{:?}", t.elapsed());
}

#[test]
fn semaphore_permit_of_a_killed_holder_is_lost_but_nothing_hangs() {
    let _serial = common::serial();
    let a = arena("sem", |a| a.sem = Semaphore::new(1));
    let mut child = spawn("sem_hold", &a);
    wait_flag(&a, 1);
    kill_child(&mut child);
    // Documented: a counting semaphore cannot know who held the permit.
    assert!(matches!(a.sem.acquire_timeout(Duration::from_millis(100)), Err(LockError::Timeout)));
    a.sem.release().unwrap(); // an operator (or a supervisor) can hand it back
    a.sem.acquire_timeout(SECOND).unwrap();
}

#[test]
fn a_segment_dropped_while_a_forgotten_guard_holds_its_lock_is_not_unmapped() {
    // glibc links every held robust mutex into the thread's robust list through the mutex
    // memory, and the next lock writes into the list head. Were the segment unmapped, the
    // lock of `b` below would write into unmapped memory (SIGSEGV).
    let _serial = common::serial();
    let pid = fork_child(|| {
        let b = SharedObject::<Mutex<u64>>::anonymous(|_| {}).expect("segment b");
        let a = SharedObject::<Mutex<u64>>::anonymous(|_| {}).expect("segment a");
        std::mem::forget(a.lock().expect("lock a"));
        drop(a);
        *b.lock().expect("lock b after dropping a") += 1;
        i32::from(*b.lock().expect("relock b") != 1)
    });
    assert_eq!(wait_pid(pid, SECOND * 10), Exit::Code(0));
}
