//! Stalled peers: a peer stopped with `SIGSTOP` at a point inside a protocol (holding a
//! claim table's lock, a mutex, a write lock, a claim) must not make anybody else's timed
//! or `try_` operation overrun its deadline by more than 50 ms; errors name the pid.
//! Peers are re-executions of this test binary that freeze themselves (test hooks in
//! `shmkit::testing`, or `SIGSTOP` after taking a lock) and are killed at the end.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Exit, spawn_role, unique_name, wait_child, wait_until};
use shmkit::sync::{AcquireError, Barrier, Condvar, LockError, Mutex, RwLock, ShmSafe};
use shmkit::{ClaimError, SharedArray, SharedObject, SharedValue};

const NAME_VAR: &str = "SHMKIT_TEST_STALL";
const SLACK: Duration = Duration::from_millis(50);
const TIMEOUT: Duration = Duration::from_millis(100);
const LONG: Duration = Duration::from_secs(10);

#[repr(C)]
struct Arena {
    m: Mutex<u64>,
    rw: RwLock<u64, 4>,
    cv_m: Mutex<u64>,
    cv: Condvar,
    barrier: Barrier,
    flag: AtomicU64,
}
// SAFETY: #[repr(C)], made only of ShmSafe fields.
unsafe impl ShmSafe for Arena {}

#[test]
#[ignore = "child process role, run by the other tests"]
fn child_role() {
    let Some(role) = common::role() else { return };
    let name = std::env::var(NAME_VAR).unwrap();
    match role.as_str() {
        "stop_in_claim_table" => {
            let a = SharedArray::<u64>::open(&name).unwrap();
            shmkit::testing::stop_inside_claim_table();
            drop(a.claim_mut(0..1));
        }
        "stop_in_value_table" => {
            let v = SharedValue::<u64>::open(&name).unwrap();
            shmkit::testing::stop_inside_claim_table();
            drop(v.lock());
        }
        "stop_holding_claim" => {
            let a = SharedArray::<u64>::open(&name).unwrap();
            let _c = a.claim_mut(0..4).unwrap();
            shmkit::sys::process::stop_self_forever();
        }
        "stop_holding_locks" => {
            let a = SharedObject::<Arena>::open(&name).unwrap();
            let _m = a.m.lock().unwrap();
            let _w = a.rw.write().unwrap();
            let _c = a.cv_m.lock().unwrap(); // waits until the parent's waiter released it
            a.flag.store(1, Ordering::SeqCst);
            shmkit::sys::process::stop_self_forever();
        }
        other => panic!("unknown role {other}"),
    }
    unreachable!("the hook stops this process for ever");
}

/// Run `op`, check it returned within `limit` + SLACK, and return its result. A call that
/// hangs aborts the test binary after 10 s (a failure, not a hung CI run).
fn within<R>(what: &str, limit: Duration, op: impl FnOnce() -> R) -> R {
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let label = what.to_owned();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(LONG) {
            eprintln!("{label} hung past its deadline while a peer was stopped");
            std::process::abort();
        }
    });
    let t = Instant::now();
    let r = op();
    let _ = done_tx.send(());
    assert!(t.elapsed() <= limit + SLACK, "{what} took {:?} (limit {limit:?} + {SLACK:?})", t.elapsed());
    r
}

fn kill(mut child: std::process::Child) {
    let _ = child.kill();
    assert_eq!(wait_child(&mut child, LONG), Exit::Signal(libc::SIGKILL));
}

#[test]
fn a_peer_stopped_inside_the_claim_table_lock_delays_no_timed_or_try_claim() {
    let name = unique_name("stall-table");
    let a = SharedArray::<u64>::create(Some(&name), 64).unwrap();
    let held = a.claim_mut(32..64).unwrap(); // taken before the peer stops
    let child = spawn_role("child_role", "stop_in_claim_table", &[(NAME_VAR, &name)]);
    let pid = child.id();
    common::wait_stopped(pid as libc::pid_t);
    let busy = |r: Option<ClaimError>| matches!(r, Some(ClaimError::TableBusy { holder }) if holder == pid);
    let r = within("try_claim_mut", Duration::ZERO, || a.try_claim_mut(0..4).err());
    assert!(busy(r), "try_claim_mut");
    assert!(busy(within("try_claim", Duration::ZERO, || a.try_claim(0..4).err())), "try_claim");
    assert!(busy(within("claim_timeout", TIMEOUT, || a.claim_timeout(0..4, TIMEOUT).err())), "claim_timeout");
    let r = within("claim_mut_timeout", TIMEOUT, || a.claim_mut_timeout(0..4, TIMEOUT).err());
    assert!(busy(r), "claim_mut_timeout");
    let msg = ClaimError::TableBusy { holder: pid }.to_string();
    assert!(msg.contains(&pid.to_string()), "{msg}");
    // What `shmkit inspect` reads, and dropping a claim, take no table lock.
    let (used, cap) = within("claim_slots", Duration::ZERO, || a.claim_slots().unwrap());
    assert!(used >= 1 && cap >= used);
    within("dropping a claim", Duration::ZERO, || drop(held));
    kill(child);
    // The stopped holder died: the table lock is recovered.
    drop(a.claim_mut_timeout(0..64, LONG).unwrap());
}

#[test]
fn a_peer_stopped_inside_a_values_claim_table_delays_no_try_lock() {
    let name = unique_name("stall-value");
    let v = SharedValue::<u64>::create(Some(&name), 7).unwrap();
    let child = spawn_role("child_role", "stop_in_value_table", &[(NAME_VAR, &name)]);
    let pid = child.id();
    common::wait_stopped(pid as libc::pid_t);
    let busy = |r: Option<ClaimError>| matches!(r, Some(ClaimError::TableBusy { holder }) if holder == pid);
    assert!(busy(within("value try_lock", Duration::ZERO, || v.try_lock().err())));
    assert!(busy(within("value lock_timeout", TIMEOUT, || v.lock_timeout(TIMEOUT).err())));
    kill(child);
    assert_eq!(v.get().unwrap(), 7);
}

#[test]
fn a_peer_stopped_holding_a_claim_delays_no_timed_claim() {
    let name = unique_name("stall-claim");
    let a = SharedArray::<u64>::create(Some(&name), 64).unwrap();
    let child = spawn_role("child_role", "stop_holding_claim", &[(NAME_VAR, &name)]);
    let pid = child.id();
    common::wait_stopped(pid as libc::pid_t);
    let r = within("try_claim", Duration::ZERO, || a.try_claim(0..8).err());
    assert!(matches!(r, Some(ClaimError::Conflict { holder, .. }) if holder == pid), "{r:?}");
    let r = within("claim_mut_timeout", TIMEOUT, || a.claim_mut_timeout(2..3, TIMEOUT).err());
    assert!(matches!(r, Some(ClaimError::Timeout { holder, .. }) if holder == pid), "{r:?}");
    drop(a.try_claim_mut(4..64).unwrap());
    kill(child);
}

#[test]
fn a_peer_stopped_holding_locks_delays_no_timed_or_try_lock_and_no_condvar_wait() {
    let name = unique_name("stall-locks");
    let obj = SharedObject::<Arena>::create(Some(&name), |a| a.barrier = Barrier::new(2)).unwrap();
    let a: &Arena = &obj;
    std::thread::scope(|s| {
        // A waiter that released the condvar's mutex; the peer takes it and stops.
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let waiter = s.spawn(move || {
            let guard = a.cv_m.lock().unwrap();
            locked_tx.send(()).unwrap();
            let t = Instant::now();
            let r = a.cv.wait_timeout(guard, Duration::from_millis(300));
            (t.elapsed(), matches!(r, Err(AcquireError::Lock(LockError::Timeout))))
        });
        locked_rx.recv_timeout(LONG).unwrap();
        let child = spawn_role("child_role", "stop_holding_locks", &[(NAME_VAR, &name)]);
        wait_until("the peer to take its locks", LONG, || a.flag.load(Ordering::SeqCst) == 1);
        common::wait_stopped(child.id() as libc::pid_t);
        let (took, timed_out) = waiter.join().unwrap();
        assert!(timed_out, "the relock after the wait reports Timeout");
        assert!(took <= Duration::from_millis(300) + SLACK, "condvar wait_timeout took {took:?}");

        let r = within("mutex try_lock", Duration::ZERO, || a.m.try_lock().map(drop));
        assert!(matches!(r, Err(AcquireError::Lock(LockError::WouldBlock))), "{r:?}");
        let r = within("mutex lock_timeout", TIMEOUT, || a.m.lock_timeout(TIMEOUT).map(drop));
        assert!(matches!(r, Err(AcquireError::Lock(LockError::Timeout))), "{r:?}");
        assert!(within("try_read", Duration::ZERO, || a.rw.try_read().is_err()));
        assert!(within("read_timeout", TIMEOUT, || a.rw.read_timeout(TIMEOUT).is_err()));
        assert!(within("write_timeout", TIMEOUT, || a.rw.write_timeout(TIMEOUT).is_err()));
        assert!(within("barrier wait_timeout", TIMEOUT, || a.barrier.wait_timeout(TIMEOUT).is_err()));
        kill(child);
    });
    // The peer died holding them: the next lockers are told, within a second.
    assert!(matches!(a.m.lock_timeout(LONG), Err(AcquireError::OwnerDied(_))));
}
