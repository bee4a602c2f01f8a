//! (Queues, pipes, dicts and lists; the locks and claims are in `stalled_peer.rs`.)
//! A peer stopped (SIGSTOP) while it holds an internal lock — a dict stripe, the list lock, a
//! queue or pipe slot — must not make anybody else wait past a deadline: every timed and try
//! operation returns by its deadline (+50 ms) with an error.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Exit, fork_child, kill, serial, wait_pid, wait_stopped};
use shmkit::channel::{ByteQueue, GetError, Pipe, Point, PutError, Queue};
use shmkit::manager::{DictOptions, ManagerError, SharedDict, SharedList, key_hash};
use shmkit::testing::pause_at;
use shmkit::{LockError, SharedAtomic};

const LIMIT: Duration = Duration::from_secs(20);
const T: Duration = Duration::from_millis(300);
const SLACK: Duration = Duration::from_millis(50);

fn reap(pid: libc::pid_t) {
    kill(pid, libc::SIGKILL);
    assert_eq!(wait_pid(pid, LIMIT), Exit::Signal(libc::SIGKILL));
}

/// Run `op`, check it failed (`is_err`) and returned by `deadline + SLACK` from its start.
fn by_deadline<R: std::fmt::Debug>(
    what: &str,
    deadline: Duration,
    op: impl FnOnce() -> R,
    is_err: impl Fn(&R) -> bool,
) {
    let start = Instant::now();
    let r = op();
    let took = start.elapsed();
    assert!(is_err(&r), "{what}: expected an error, got {r:?}");
    assert!(took <= deadline + SLACK, "{what}: returned after {took:?}, deadline {deadline:?}");
}

fn stop() -> u64 {
    // SAFETY: raise has no memory-safety preconditions.
    unsafe { libc::raise(libc::SIGSTOP) };
    0
}

fn lock_timeout<R>(r: &Result<R, ManagerError>) -> bool {
    matches!(r, Err(ManagerError::Lock(LockError::Timeout)))
}

#[test]
fn dict_ops_give_up_on_a_stripe_held_by_a_stopped_peer() {
    let _s = serial();
    let mut d: SharedDict<str, u64> = DictOptions::new().stripes(1).anonymous(16).unwrap();
    d.insert("a", 1).unwrap();
    let pid = fork_child(|| d.update("a", 0, |_| stop()).map_or(1, |_| 0));
    wait_stopped(pid);
    d.set_timeout(Some(T));
    by_deadline("get", T, || d.get("a"), lock_timeout);
    by_deadline("contains_key", T, || d.contains_key("a"), lock_timeout);
    by_deadline("insert", T, || d.insert("b", 2), lock_timeout);
    by_deadline("update", T, || d.update("a", 0, |v| v + 1), lock_timeout);
    by_deadline("remove", T, || d.remove("a"), lock_timeout);
    by_deadline("snapshot", T, || d.snapshot(), lock_timeout);
    by_deadline("clear", T, || d.clear(), lock_timeout);
    reap(pid);
    assert_eq!(d.get("a").unwrap(), Some(1));
}

/// The stripe (of `stripes`) a key lands in: the dict's documented rule.
fn stripe_of(key: &str, stripes: u64) -> u64 {
    ((key_hash(key.as_bytes()) >> 32) * stripes) >> 32
}

/// Keys `k0, k1, …` that land in stripe `s` of 2.
fn keys_in(s: u64) -> impl Iterator<Item = String> {
    (0..).map(|i| format!("k{i}")).filter(move |k| stripe_of(k, 2) == s)
}

/// An insert into a full dict that must recount (a holder died) waits first for its own
/// stripe, then for every stripe: the whole operation still ends by its one deadline.
#[test]
fn dict_insert_with_recount_keeps_one_deadline() {
    let _s = serial();
    let mut d: SharedDict<str, u64> = DictOptions::new().stripes(2).anonymous(3).unwrap();
    let mut s0 = keys_in(0);
    let (a0, a1, a2) = (s0.next().unwrap(), s0.next().unwrap(), s0.next().unwrap());
    let b = keys_in(1).next().unwrap();
    for k in [&a0, &a1, &b] {
        d.insert(k, 1).unwrap(); // full
    }
    // A holder dies inside an update of stripe 0: its next locker sets `needs_recount`.
    let died = fork_child(|| {
        // SAFETY: _exit has no memory-safety preconditions; the stripe lock dies with us.
        d.update(&a0, 0, |_| unsafe { libc::_exit(0) }).map_or(1, |_| 2)
    });
    assert_eq!(wait_pid(died, LIMIT), Exit::Code(0));
    // A stopped peer holds stripe 1 for good.
    let stopped = fork_child(|| d.update(&b, 0, |_| stop()).map_or(1, |_| 0));
    wait_stopped(stopped);
    // A slow peer holds stripe 0 for most of the deadline.
    let flag = SharedAtomic::<u32>::anonymous(0).unwrap();
    let slow = fork_child(|| {
        let r = d.update(&a0, 0, |v| {
            flag.store(1, Ordering::SeqCst);
            std::thread::sleep(T * 2 / 3);
            v
        });
        r.map_or(1, |_| 0)
    });
    common::wait_until("the slow peer to hold stripe 0", LIMIT, || flag.load(Ordering::SeqCst) == 1);
    d.set_timeout(Some(T));
    by_deadline("insert into a full dict", T, || d.insert(&a2, 3), lock_timeout);
    assert_eq!(wait_pid(slow, LIMIT), Exit::Code(0));
    reap(stopped);
}

#[test]
fn list_ops_give_up_on_a_lock_held_by_a_stopped_peer() {
    let _s = serial();
    let mut l = SharedList::<u64>::anonymous(8).unwrap();
    l.push(1).unwrap();
    let pid = fork_child(|| l.update(0, |_| stop()).map_or(1, |_| 0));
    wait_stopped(pid);
    l.set_timeout(Some(T));
    by_deadline("push", T, || l.push(2), lock_timeout);
    by_deadline("pop", T, || l.pop(), lock_timeout);
    by_deadline("get", T, || l.get(0), lock_timeout);
    by_deadline("set", T, || l.set(0, 5), lock_timeout);
    by_deadline("update", T, || l.update(0, |v| v + 1), lock_timeout);
    by_deadline("len", T, || l.len(), lock_timeout);
    by_deadline("snapshot", T, || l.snapshot(), lock_timeout);
    by_deadline("clear", T, || l.clear(), lock_timeout);
    reap(pid);
    assert_eq!(l.snapshot().unwrap(), vec![1]);
}

/// A producer stopped holding a claimed slot, a consumer stopped holding a full one.
#[test]
fn queue_ops_give_up_on_a_slot_held_by_a_stopped_peer() {
    let _s = serial();
    let q = Queue::<u64>::anonymous(2).unwrap();
    let producer = fork_child(|| {
        pause_at(Some(Point::PutClaimed));
        q.put(9).map_or(1, |_| 0)
    });
    wait_stopped(producer);
    by_deadline("try_get", Duration::ZERO, || q.try_get(), |r| r == &Err(GetError::Empty));
    by_deadline("get_timeout", T, || q.get_timeout(T), |r| r == &Err(GetError::Timeout));
    q.put(1).unwrap(); // the second slot
    by_deadline("try_put", Duration::ZERO, || q.try_put(2), |r| matches!(r, Err(PutError::Full(2))));
    by_deadline("put_timeout", T, || q.put_timeout(2, T), |r| matches!(r, Err(PutError::Timeout(2))));
    reap(producer);

    let b = ByteQueue::anonymous(1, 16).unwrap();
    b.put(b"x").unwrap();
    let consumer = fork_child(|| {
        pause_at(Some(Point::GetClaimed));
        b.get().map_or(1, |_| 0)
    });
    wait_stopped(consumer);
    by_deadline("byte try_put", Duration::ZERO, || b.try_put(b"y"), |r| matches!(r, Err(PutError::Full(_))));
    by_deadline("byte put_timeout", T, || b.put_timeout(b"y", T), |r| matches!(r, Err(PutError::Timeout(_))));
    by_deadline("byte get_timeout", T, || b.get_timeout(T), |r| r == &Err(GetError::Timeout));
    reap(consumer);
}

#[test]
fn pipe_ops_give_up_on_a_slot_held_by_a_stopped_peer() {
    let _s = serial();
    let (a, b) = Pipe::anonymous(1, 16).unwrap();
    let sender = fork_child(|| {
        pause_at(Some(Point::PutClaimed));
        b.send(b"hi").map_or(1, |_| 0)
    });
    wait_stopped(sender);
    by_deadline("try_recv", Duration::ZERO, || a.try_recv(), |r| r == &Err(GetError::Empty));
    by_deadline("recv_timeout", T, || a.recv_timeout(T), |r| r == &Err(GetError::Timeout));
    a.send(b"1").unwrap();
    by_deadline("try_send", Duration::ZERO, || a.try_send(b"2"), |r| matches!(r, Err(PutError::Full(_))));
    by_deadline("send_timeout", T, || a.send_timeout(b"2", T), |r| matches!(r, Err(PutError::Timeout(_))));
    reap(sender);
}

/// A producer or consumer stopped at each of the six pause points of a ring operation:
/// every timed and try operation of the others, on a queue and on a byte queue, returns by
/// its deadline (+ SLACK).
#[test]
fn every_pause_point_of_a_ring_operation_delays_no_timed_or_try_op() {
    let _s = serial();
    let points =
        [Point::PutLocked, Point::PutClaimed, Point::PutWritten, Point::GetLocked, Point::GetClaimed, Point::GetRead];
    for point in points {
        let is_get = matches!(point, Point::GetLocked | Point::GetClaimed | Point::GetRead);
        let q = Queue::<u64>::anonymous(2).unwrap();
        let b = ByteQueue::anonymous(2, 16).unwrap();
        if is_get {
            q.put(7).unwrap();
            b.put(b"x").unwrap();
        }
        for bytes in [false, true] {
            let peer = fork_child(|| {
                pause_at(Some(point));
                let ok = match (is_get, bytes) {
                    (false, false) => q.put(9).is_ok(),
                    (false, true) => b.put(b"y").is_ok(),
                    (true, false) => q.get().is_ok(),
                    (true, true) => b.get().is_ok(),
                };
                i32::from(!ok)
            });
            wait_stopped(peer);
            let ctx = format!("{point:?} ({})", if bytes { "byte queue" } else { "queue" });
            let within = |what: &str, limit: Duration, op: &mut dyn FnMut()| {
                let start = Instant::now();
                op();
                let took = start.elapsed();
                assert!(took <= limit + SLACK, "{ctx}: {what} took {took:?} (limit {limit:?})");
            };
            if bytes {
                within("try_put", Duration::ZERO, &mut || drop(b.try_put(b"z")));
                within("put_timeout", T, &mut || drop(b.put_timeout(b"z", T)));
                within("try_get", Duration::ZERO, &mut || drop(b.try_get()));
                within("get_timeout", T, &mut || drop(b.get_timeout(T)));
            } else {
                within("try_put", Duration::ZERO, &mut || drop(q.try_put(1)));
                within("put_timeout", T, &mut || drop(q.put_timeout(1, T)));
                within("try_get", Duration::ZERO, &mut || drop(q.try_get()));
                within("get_timeout", T, &mut || drop(q.get_timeout(T)));
            }
            reap(peer);
        }
    }
}
