//! The wait policy: every blocking wait spins (adaptively by default, or as told) and then
//! parks, between real processes, without losing a wake-up, past a deadline, or the
//! owner-died verdict of a robust lock.

mod common;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Exit, fork_child, serial_for_locks, wait_pid};
use shmkit::channel::{GetError, Pipe, Queue};
use shmkit::shared::SharedObject;
use shmkit::sync::{AcquireError, Barrier, Condvar, Event, LockError, Mutex, Semaphore, ShmSafe, WaitPolicy};

const LONG: Duration = Duration::from_secs(20);
const HANDOFFS: u32 = 300;

fn policies() -> [WaitPolicy; 4] {
    [WaitPolicy::Adaptive, WaitPolicy::Park, WaitPolicy::Spin(Duration::from_micros(30)), WaitPolicy::Spin(LONG)]
}

#[repr(C)]
struct Arena {
    ping: Semaphore,
    pong: Semaphore,
    ev_ping: Event,
    ev_pong: Event,
    barrier: Barrier,
    m: Mutex<u64>,
    cv: Condvar,
    turn: AtomicU32,
}
// SAFETY: #[repr(C)], made only of ShmSafe fields.
unsafe impl ShmSafe for Arena {}

fn arena() -> SharedObject<Arena> {
    SharedObject::<Arena>::anonymous(|a| a.barrier = Barrier::new(2)).unwrap()
}

/// Hand-offs between two processes through every primitive, under `policy` on both sides:
/// a lost wake-up hangs (the child is killed after LONG and the test fails).
fn ping_pong(a: &Arena, policy: WaitPolicy) {
    let t = Some(LONG);
    let _turn = serial_for_locks();
    let pid = fork_child(|| {
        for i in 0..HANDOFFS {
            a.ping.acquire_with(policy, t).unwrap();
            a.pong.release().unwrap();
            assert!(a.ev_ping.wait_with(policy, t));
            a.ev_ping.clear();
            a.ev_pong.set();
            a.barrier.wait_with(policy, t).unwrap();
            let mut g = a.m.lock().unwrap();
            while a.turn.load(Ordering::Acquire) != 2 * i + 1 {
                g = a.cv.wait_with(g, policy, t).unwrap().0;
            }
            *g += 1;
            a.turn.store(2 * i + 2, Ordering::Release);
            a.cv.notify_all();
        }
        0
    });
    for i in 0..HANDOFFS {
        a.ping.release().unwrap();
        a.pong.acquire_with(policy, t).unwrap();
        a.ev_ping.set();
        assert!(a.ev_pong.wait_with(policy, t));
        a.ev_pong.clear();
        a.barrier.wait_with(policy, t).unwrap();
        let mut g = a.m.lock().unwrap();
        *g += 1;
        a.turn.store(2 * i + 1, Ordering::Release);
        a.cv.notify_all();
        while a.turn.load(Ordering::Acquire) != 2 * i + 2 {
            g = a.cv.wait_with(g, policy, t).unwrap().0;
        }
    }
    assert_eq!(wait_pid(pid, LONG), Exit::Code(0), "{policy:?}");
    assert_eq!(*a.m.lock().unwrap(), 2 * u64::from(HANDOFFS), "{policy:?}");
}

#[test]
fn every_policy_hands_off_through_every_primitive_without_losing_a_wake_up() {
    for policy in policies() {
        ping_pong(&arena(), policy);
    }
}

#[test]
fn queues_and_pipes_hand_off_under_every_policy_and_the_old_spin_knob_still_works() {
    for policy in policies() {
        let mut q = Queue::<u64>::anonymous(2).unwrap();
        q.set_wait_policy(policy);
        let (mut a, mut b) = Pipe::anonymous(2, 16).unwrap();
        a.set_wait_policy(policy);
        b.set_wait_policy(policy);
        assert_eq!(a.wait_policy(), policy);
        let _turn = serial_for_locks();
        let pid = fork_child(|| {
            for i in 0..u64::from(HANDOFFS) {
                let got = b.recv().unwrap();
                assert_eq!(got, i.to_le_bytes());
                q.put(i).unwrap();
            }
            0
        });
        for i in 0..u64::from(HANDOFFS) {
            a.send(&i.to_le_bytes()).unwrap();
            assert_eq!(q.get_timeout(LONG), Ok(i));
        }
        assert_eq!(wait_pid(pid, LONG), Exit::Code(0), "{policy:?}");
    }
    let (mut a, _b) = Pipe::anonymous(2, 16).unwrap();
    #[allow(deprecated)]
    a.set_spin(Duration::from_micros(5));
    assert_eq!(a.wait_policy(), WaitPolicy::Spin(Duration::from_micros(5)));
}

#[test]
fn a_handle_follows_the_process_default_until_given_its_own_policy() {
    let q = Queue::<u64>::anonymous(2).unwrap();
    assert_eq!(q.wait_policy(), WaitPolicy::process_default());
    let mut q = q;
    q.set_wait_policy(WaitPolicy::Park);
    assert_eq!(q.wait_policy(), WaitPolicy::Park);
}

#[test]
fn a_long_spin_policy_still_returns_by_every_deadline() {
    let spin = WaitPolicy::Spin(Duration::from_secs(60));
    let short = Duration::from_millis(30);
    let within = |what: &str, f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        assert!(t.elapsed() < Duration::from_secs(5), "{what} spun past its deadline: {:?}", t.elapsed());
    };
    let a = arena();
    within("semaphore", &mut || assert!(matches!(a.ping.acquire_with(spin, Some(short)), Err(LockError::Timeout))));
    within("event", &mut || assert!(!a.ev_ping.wait_with(spin, Some(short))));
    within("barrier", &mut || assert!(matches!(a.barrier.wait_with(spin, Some(short)), Err(LockError::Timeout))));
    within("condvar", &mut || assert!(a.cv.wait_with(a.m.lock().unwrap(), spin, Some(short)).unwrap().1.timed_out()));
    let mut q = Queue::<u64>::anonymous(1).unwrap();
    q.set_wait_policy(spin);
    within("queue get", &mut || assert_eq!(q.get_timeout(short), Err(GetError::Timeout)));
    q.put(1).unwrap();
    within("queue put", &mut || assert!(q.put_timeout(2, short).is_err()));
}

/// The mutex's contended path spins on a try-lock before the robust lock: a holder killed
/// while this process spins still comes back as `OwnerDied`, with the guard.
#[test]
fn a_holder_killed_while_the_locker_spins_is_reported_as_owner_died() {
    let m = SharedObject::<Mutex<u64>>::anonymous(|_| {}).unwrap();
    let locked = SharedObject::<AtomicU64>::anonymous(|_| {}).unwrap();
    let _turn = serial_for_locks();
    let pid = fork_child(|| {
        let mut g = m.lock().unwrap();
        *g = 7;
        locked.store(1, Ordering::SeqCst);
        std::mem::forget(g);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    common::wait_until("the child holds the lock", LONG, || locked.load(Ordering::SeqCst) == 1);
    // Spin for up to a minute in this process, so the death happens mid-spin.
    WaitPolicy::set_process_default(WaitPolicy::Spin(Duration::from_secs(60)));
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        common::kill(pid, libc::SIGKILL);
    });
    let t = Instant::now();
    let r = m.lock();
    WaitPolicy::set_process_default(WaitPolicy::Adaptive);
    killer.join().unwrap();
    assert!(t.elapsed() < LONG, "the locker waited {:?}", t.elapsed());
    match r {
        Err(AcquireError::OwnerDied(died)) => {
            assert_eq!(**died.get_ref(), 7);
            drop(died.mark_consistent().unwrap());
        }
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert_eq!(wait_pid(pid, LONG), Exit::Signal(libc::SIGKILL));
    assert!(m.try_lock().is_ok());
}
