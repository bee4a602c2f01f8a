//! Thread death is not process death: a guard or claim leaked by a thread that exits
//! (`Box::leak`, `mem::forget`) can keep a `&mut` alive in its process, so the lock or
//! claim must not be granted again while that process lives — for every primitive built
//! on a robust mutex, in this process (for ever) and across processes (until that process
//! ends, and even a killed process that takes long to exit is not mistaken for a live
//! one). A guard dropped in a forked child must leave its parent's lock or claim alone.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Exit, spawn_role, unique_name, wait_child, wait_until};
use shmkit::sync::{AcquireError, LockError, Mutex, RobustSemaphore, RwLock, ShmSafe};
use shmkit::{ClaimError, SharedArray, SharedObject, SharedValue};

const SHORT: Duration = Duration::from_millis(100);
const LONG: Duration = Duration::from_secs(10);

fn me() -> u32 {
    std::process::id()
}

/// Run `f` on a thread that exits while `f`'s leaked guard lives on.
fn on_exiting_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::spawn(f).join().expect("thread")
}

fn abandoned_by(r: &Result<(), LockError>, pid: u32) -> bool {
    matches!(r, Err(LockError::AbandonedByThread { pid: p }) if *p == pid)
}

/// The outcome of a Mutex acquisition, guard dropped.
fn outcome<G>(r: Result<G, AcquireError<G>>) -> Result<(), LockError> {
    match r {
        Ok(_) => Ok(()),
        Err(AcquireError::OwnerDied(_)) => Err(LockError::OwnerDied),
        Err(AcquireError::Lock(e)) => Err(e),
    }
}

#[test]
fn a_process_private_mutex_leaked_by_an_exited_thread_is_never_granted_again() {
    static M: Mutex<Vec<u8>> = Mutex::new(Vec::new());
    let leaked: &'static mut Vec<u8> = on_exiting_thread(|| &mut **Box::leak(Box::new(M.lock().unwrap())));
    for _ in 0..3 {
        let t = Instant::now();
        assert!(abandoned_by(&outcome(M.lock()), me()));
        assert!(abandoned_by(&outcome(M.try_lock()), me()));
        assert!(abandoned_by(&outcome(M.lock_timeout(SHORT)), me()));
        assert!(t.elapsed() < SHORT * 5, "{:?}", t.elapsed());
    }
    // The leaked borrow is still the only one: using it is fine.
    leaked.reserve(1 << 20);
    leaked.push(1);
    let msg = outcome(M.lock()).unwrap_err().to_string();
    assert!(msg.contains(&me().to_string()) && msg.contains("thread"), "{msg}");
}

#[test]
fn a_shared_mutex_rwlock_and_permit_leaked_by_an_exited_thread_stay_refused() {
    #[repr(C)]
    struct Locks {
        m: Mutex<u64>,
        rw_w: RwLock<u64, 4>,
        rw_r: RwLock<u64, 4>,
        one: RobustSemaphore<1>,
        two: RobustSemaphore<2>,
    }
    // SAFETY: #[repr(C)], made only of ShmSafe fields.
    unsafe impl ShmSafe for Locks {}
    let obj: &'static SharedObject<Locks> = Box::leak(Box::new(SharedObject::<Locks>::anonymous(|_| {}).unwrap()));
    on_exiting_thread(move || {
        std::mem::forget(obj.m.lock().unwrap());
        std::mem::forget(obj.rw_w.write().unwrap());
        std::mem::forget(obj.rw_r.read().unwrap());
        std::mem::forget(obj.one.acquire().unwrap());
        std::mem::forget(obj.two.acquire().unwrap());
    });
    assert!(abandoned_by(&outcome(obj.m.lock_timeout(LONG)), me()));
    assert!(abandoned_by(&outcome(obj.m.lock()), me()));
    // A leaked writer: nobody reads or writes again.
    assert!(abandoned_by(&outcome(obj.rw_w.read_timeout(LONG)), me()));
    assert!(abandoned_by(&outcome(obj.rw_w.try_write()), me()));
    // A leaked reader: others may still read, but no writer ever gets in.
    assert!(outcome(obj.rw_r.read_timeout(LONG)).is_ok());
    assert!(abandoned_by(&outcome(obj.rw_r.write_timeout(LONG)), me()));
    assert!(abandoned_by(&outcome(obj.rw_r.try_write()), me()));
    // A leaked permit is lost; with none left the call fails instead of waiting for ever.
    let t = Instant::now();
    assert!(abandoned_by(&obj.one.acquire().map(drop), me()), "all permits lost: an error, not a hang");
    assert!(t.elapsed() < Duration::from_secs(2));
    let p = obj.two.acquire_timeout(LONG).unwrap();
    assert!(!p.recovered(), "the other permit is a fresh one");
    drop(p);
}

#[test]
fn claims_and_values_leaked_by_an_exited_thread_are_never_granted_again() {
    let a: &'static SharedArray<u64> = Box::leak(Box::new(SharedArray::<u64>::anonymous(64).unwrap()));
    let v: &'static SharedValue<u64> = Box::leak(Box::new(SharedValue::<u64>::anonymous(5).unwrap()));
    on_exiting_thread(move || {
        std::mem::forget(a.claim_mut(0..16).unwrap());
        std::mem::forget(a.claim(32..48).unwrap());
        std::mem::forget(v.lock().unwrap());
    });
    let abandoned = |r: Option<ClaimError>| matches!(r, Some(ClaimError::Abandoned { pid, .. }) if pid == me());
    for _ in 0..2 {
        assert!(abandoned(a.claim_timeout(8..9, LONG).err()));
        assert!(abandoned(a.try_claim_mut(15..20).err()));
        assert!(abandoned(a.claim_mut_timeout(40..41, LONG).err()));
        assert!(abandoned(v.lock_timeout(LONG).err()));
        assert!(abandoned(v.try_lock().err()));
    }
    // Ranges that do not overlap, and readers beside a leaked reader, are fine.
    drop(a.claim_mut_timeout(16..32, LONG).unwrap());
    drop(a.claim_timeout(32..48, LONG).unwrap());
}

/// Children: open the arena, leak guards on a thread that exits, report, live on.
#[test]
#[ignore = "child process role, run by the other tests"]
fn child_role() {
    let Some(role) = common::role() else { return };
    let name = std::env::var("SHMKIT_TEST_ARENA").unwrap();
    match role.as_str() {
        "leak_mutex" => {
            let obj: &'static SharedObject<Arena> = Box::leak(Box::new(SharedObject::<Arena>::open(&name).unwrap()));
            on_exiting_thread(move || std::mem::forget(obj.m.lock().unwrap()));
            obj.flag.store(1, Ordering::SeqCst);
        }
        "leak_claim" => {
            let a: &'static SharedArray<u64> = Box::leak(Box::new(SharedArray::<u64>::open(&name).unwrap()));
            on_exiting_thread(move || std::mem::forget(a.claim_mut(0..4).unwrap()));
            a.atomics(8..9).unwrap()[0].store(1, Ordering::SeqCst);
        }
        other => panic!("unknown role {other}"),
    }
    std::thread::sleep(Duration::from_secs(60));
}

#[repr(C)]
struct Arena {
    m: Mutex<u64>,
    flag: AtomicU64,
}
// SAFETY: #[repr(C)], made only of ShmSafe fields.
unsafe impl ShmSafe for Arena {}

#[test]
fn a_lock_leaked_by_a_thread_of_another_live_process_is_refused_there_too() {
    let name = unique_name("tdeath-m");
    let obj = SharedObject::<Arena>::create(Some(&name), |_| {}).unwrap();
    let mut child = spawn_role("child_role", "leak_mutex", &[("SHMKIT_TEST_ARENA", &name)]);
    wait_until("the child to leak its guard", LONG, || obj.flag.load(Ordering::SeqCst) == 1);
    let pid = child.id();
    let t = Instant::now();
    assert!(abandoned_by(&outcome(obj.m.lock_timeout(SHORT)), pid));
    assert!(t.elapsed() < SHORT * 3, "{:?}", t.elapsed());
    assert!(abandoned_by(&outcome(obj.m.try_lock()), pid));
    assert!(abandoned_by(&outcome(obj.m.lock()), pid), "refused while that process lives");
    // Once it has ended, every borrow ended with it: the next locker is told the owner died.
    let _ = child.kill();
    assert_eq!(wait_child(&mut child, LONG), Exit::Signal(libc::SIGKILL));
    match obj.m.lock_timeout(LONG) {
        Err(AcquireError::OwnerDied(d)) => drop(d.mark_consistent().unwrap()),
        other => panic!("expected OwnerDied once the process ended, got {:?}", outcome(other)),
    }
    assert!(outcome(obj.m.try_lock()).is_ok());
}

#[test]
fn a_claim_leaked_by_a_thread_of_another_live_process_is_refused_while_it_lives() {
    let name = unique_name("tdeath-c");
    let a = SharedArray::<u64>::create(Some(&name), 16).unwrap();
    let mut child = spawn_role("child_role", "leak_claim", &[("SHMKIT_TEST_ARENA", &name)]);
    wait_until("the child to leak its claim", LONG, || a.atomics(8..9).unwrap()[0].load(Ordering::SeqCst) == 1);
    let pid = child.id();
    let r = a.try_claim_mut(0..16).err();
    assert!(matches!(r, Some(ClaimError::Abandoned { pid: p, .. }) if p == pid), "{r:?}");
    let r = a.claim_mut_timeout(0..16, SHORT).err();
    assert!(matches!(r, Some(ClaimError::Abandoned { pid: p, .. }) if p == pid), "{r:?}");
    drop(a.claim_mut_timeout(4..16, LONG).unwrap());
    // Once that process ended, its abandoned claim is freed.
    let _ = child.kill();
    assert_eq!(wait_child(&mut child, LONG), Exit::Signal(libc::SIGKILL));
    drop(a.claim_mut_timeout(0..16, LONG).unwrap());
}

#[test]
fn guards_dropped_in_a_forked_child_leave_the_parents_claims_and_locks_alone() {
    let a = SharedArray::<u64>::anonymous(16).unwrap();
    let rw = SharedObject::<RwLock<u64, 4>>::anonymous(|_| {}).unwrap();
    let mut claim = Some(a.claim_mut(0..8).unwrap());
    let mut read = Some(rw.read().unwrap());
    common::in_child(|| {
        drop(claim.take());
        drop(read.take());
        0
    });
    std::thread::scope(|s| {
        s.spawn(|| {
            let r = a.try_claim_mut(0..8).err();
            assert!(matches!(r, Some(ClaimError::Conflict { holder, .. }) if holder == me()), "{r:?}");
            let r = outcome(rw.try_write());
            assert!(matches!(r, Err(LockError::WouldBlock)), "{r:?}");
        });
    });
    drop((claim, read));
    drop(a.try_claim_mut(0..8).unwrap());
    drop(rw.try_write().unwrap());
}

/// A child that maps and touches `gib` GiB (so its exit takes a while to free them), runs
/// `hold`, reports, and waits to be killed.
fn big_child_holding(gib: usize, hold: impl FnOnce()) -> libc::pid_t {
    let _turn = common::serial_for_locks();
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let pid = common::fork_child(|| {
        let len = gib << 30;
        // SAFETY: a fresh private anonymous mapping; nothing else uses it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return 3;
        }
        hold();
        // SAFETY: writes one byte from a live buffer to our pipe.
        unsafe { libc::write(fds[1], b"x".as_ptr().cast(), 1) };
        loop {
            // SAFETY: pause has no preconditions; the parent kills us.
            unsafe { libc::pause() };
        }
    });
    let mut b = [0u8; 1];
    // SAFETY: reads one byte into a live buffer from our pipe.
    assert_eq!(unsafe { libc::read(fds[0], b.as_mut_ptr().cast(), 1) }, 1, "the child did not report");
    // SAFETY: our own descriptors, closed once.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    pid
}

#[test]
fn a_killed_owner_that_takes_long_to_exit_is_not_mistaken_for_a_live_one() {
    #[repr(C)]
    struct Locks {
        m: Mutex<u64>,
        sem: RobustSemaphore<1>,
    }
    // SAFETY: #[repr(C)], made only of ShmSafe fields.
    unsafe impl ShmSafe for Locks {}
    let obj = SharedObject::<Locks>::anonymous(|_| {}).unwrap();
    let pid = big_child_holding(2, || {
        std::mem::forget(obj.m.lock().unwrap());
        std::mem::forget(obj.sem.acquire().unwrap());
    });
    common::kill(pid, libc::SIGKILL);
    // While the killed process frees its memory its threads are dead but it has not ended:
    // a try_lock now may be refused (it does not wait), never for good, and a timed lock
    // waits for the process to end and then gets the news.
    let first = outcome(obj.m.try_lock());
    assert!(
        matches!(first, Err(LockError::WouldBlock | LockError::AbandonedByThread { .. } | LockError::OwnerDied)),
        "{first:?}"
    );
    if first.is_err() && !matches!(first, Err(LockError::OwnerDied)) {
        match obj.m.lock_timeout(Duration::from_secs(30)) {
            Err(AcquireError::OwnerDied(d)) => drop(d.mark_consistent().unwrap()),
            other => panic!("expected OwnerDied once the killed owner ended, got {:?}", outcome(other)),
        }
    }
    let p = obj.sem.acquire_timeout(Duration::from_secs(30)).expect("the killed holder's permit comes back");
    assert!(p.recovered());
    drop(p);
    assert_eq!(common::wait_pid(pid, LONG), Exit::Signal(libc::SIGKILL));
}

/// A child killed and reaped when the test ends, also when it fails first.
struct Reap(libc::pid_t);

impl Drop for Reap {
    fn drop(&mut self) {
        // SAFETY: our own child (once reaped: no process of ours, ESRCH/ECHILD).
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}

/// The state letter of process `pid` (`/proc/<pid>/stat`), `'?'` if unreadable.
fn proc_state(pid: libc::pid_t) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()).unwrap_or('?')
}

#[test]
fn a_waiter_granted_the_lock_of_a_killed_owner_after_a_try_lock_refused_it_waits_for_the_exit() {
    let obj = SharedObject::<Mutex<u64>>::anonymous(|_| {}).unwrap();
    let owner = big_child_holding(1, || std::mem::forget(obj.lock().unwrap()));
    let _reap_owner = Reap(owner);
    // A waiter parked inside glibc (an untimed lock) before the owner dies: it must get
    // OwnerDied once the owner's process has ended, however the lock reaches it.
    let waiter = {
        let _turn = common::serial_for_locks();
        common::fork_child(|| match obj.lock() {
            Err(AcquireError::OwnerDied(d)) => d.mark_consistent().map_or(5, |_| 0),
            Ok(_) => 2,
            Err(AcquireError::Lock(LockError::AbandonedByThread { .. })) => 3,
            Err(AcquireError::Lock(_)) => 4,
        })
    };
    let _reap_waiter = Reap(waiter);
    wait_until("the waiter to sleep in the lock", LONG, || proc_state(waiter) == 'S');
    std::thread::sleep(SHORT); // past any spin: parked in the kernel
    // Stopped, it cannot take the lock first when the owner dies: this process does.
    common::kill(waiter, libc::SIGSTOP);
    common::wait_stopped(waiter);
    common::kill(owner, libc::SIGKILL);
    // While the killed owner frees its memory, a try_lock is refused for now (it cannot
    // wait for the exit) and leaves the lock marked as abandoned by that process.
    let t = Instant::now();
    let first = loop {
        match outcome(obj.try_lock()) {
            Err(LockError::WouldBlock) if t.elapsed() < LONG => std::thread::yield_now(),
            other => break other,
        }
    };
    assert!(abandoned_by(&first, owner as u32), "{first:?} (the owner ended before the try_lock: rerun)");
    // The waiter now gets the lock from glibc while the state word still names the owner.
    common::kill(waiter, libc::SIGCONT);
    let got = common::wait_pid(waiter, LONG);
    assert_eq!(common::wait_pid(owner, LONG), Exit::Signal(libc::SIGKILL));
    assert_eq!(got, Exit::Code(0), "3: AbandonedByThread without waiting for the exit");
    assert_eq!(*obj.lock_timeout(LONG).unwrap(), 0);
}
