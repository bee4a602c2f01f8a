//! Death inside queue operations: a forked child stops itself (SIGSTOP, through the
//! `testing::pause_at` test hook) at a precise point of `put` or `get`, the parent SIGKILLs
//! it there, and the survivors must go on: no corruption, no wait without end, and every
//! message delivered exactly once except the one the dead process held (counted in
//! `abandoned`). Every wait has a timeout.

mod common;

use std::time::{Duration, Instant};

use common::{Exit, fork_child, kill, serial, wait_pid, wait_stopped};
use shmkit::channel::{ByteQueue, GetError, Pipe, Point, Queue};
use shmkit::testing::pause_at;

const LIMIT: Duration = Duration::from_secs(20);

/// Fork a child that runs `op` with the hook set at `point`, wait until it stops there,
/// SIGKILL it and reap it.
fn kill_at(point: Point, op: impl FnOnce()) {
    let pid = fork_child(|| {
        pause_at(Some(point));
        op();
        3 // not reached: the hook stops the process
    });
    wait_stopped(pid);
    kill(pid, libc::SIGKILL);
    assert_eq!(wait_pid(pid, LIMIT), Exit::Signal(libc::SIGKILL));
}

/// Drive the queue through several laps to show it is consistent.
fn laps(q: &Queue<u64>) {
    for lap in 0..5u64 {
        for i in 0..q.capacity() as u64 {
            q.put_timeout(lap * 1000 + i, LIMIT).unwrap();
        }
        for i in 0..q.capacity() as u64 {
            assert_eq!(q.get_timeout(LIMIT), Ok(lap * 1000 + i));
        }
    }
    assert!(q.is_empty());
}

fn producer_killed(point: Point, lost: u64) {
    let _s = serial();
    let q = Queue::<u64>::anonymous(4).unwrap();
    q.put(1).unwrap();
    kill_at(point, || {
        let _ = q.put(2);
    });
    q.put(3).unwrap();
    assert_eq!(q.get_timeout(LIMIT), Ok(1));
    if lost == 0 {
        // Killed before claiming: its message never existed.
        assert_eq!(q.get_timeout(LIMIT), Ok(3));
    } else {
        // Claimed, never published: skipped, counted, and the next one arrives.
        assert_eq!(q.get_timeout(LIMIT), Ok(3));
    }
    assert_eq!(q.abandoned(), lost);
    assert_eq!(q.try_get(), Err(GetError::Empty));
    laps(&q);
}

#[test]
fn producer_killed_holding_slot_before_claim() {
    producer_killed(Point::PutLocked, 0);
}

#[test]
fn producer_killed_after_claim() {
    producer_killed(Point::PutClaimed, 1);
}

#[test]
fn producer_killed_before_publish() {
    producer_killed(Point::PutWritten, 1);
}

fn consumer_killed(point: Point, lost: u64) {
    let _s = serial();
    let q = Queue::<u64>::anonymous(3).unwrap();
    for v in [10, 11, 12] {
        q.put(v).unwrap();
    }
    kill_at(point, || {
        let _ = q.get();
    });
    // The other messages come, in order; the one the dead consumer claimed is gone.
    let first = if lost == 0 { vec![10, 11, 12] } else { vec![11, 12] };
    for v in first {
        assert_eq!(q.get_timeout(LIMIT), Ok(v));
    }
    assert_eq!(q.try_get(), Err(GetError::Empty));
    // Producers wrap around onto the dead consumer's slot and reclaim it.
    laps(&q);
    assert_eq!(q.abandoned(), lost);
}

#[test]
fn consumer_killed_holding_slot_before_claim() {
    consumer_killed(Point::GetLocked, 0);
}

#[test]
fn consumer_killed_after_claim() {
    consumer_killed(Point::GetClaimed, 1);
}

#[test]
fn consumer_killed_after_read() {
    consumer_killed(Point::GetRead, 1);
}

/// A consumer already parked on the slot a producer is writing is released when that
/// producer dies, and gets the next message.
#[test]
fn parked_consumer_survives_producer_death() {
    let _s = serial();
    let q = Queue::<u64>::anonymous(4).unwrap();
    let pid = fork_child(|| {
        pause_at(Some(Point::PutWritten));
        let _ = q.put(99);
        3
    });
    wait_stopped(pid);
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let start = Instant::now();
            (q.get_timeout(LIMIT), start.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        q.put(7).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let killed = Instant::now();
        kill(pid, libc::SIGKILL);
        let (got, _) = waiter.join().unwrap();
        assert_eq!(got, Ok(7));
        assert!(killed.elapsed() < Duration::from_secs(2), "the consumer noticed the death late");
    });
    assert_eq!(wait_pid(pid, LIMIT), Exit::Signal(libc::SIGKILL));
    assert_eq!(q.abandoned(), 1);
    laps(&q);
}

/// The same with variable-size messages: a half-written message is never delivered.
#[test]
fn byte_queue_producer_killed_mid_message() {
    let _s = serial();
    let q = ByteQueue::anonymous(2, 1 << 20).unwrap();
    let big = vec![0xabu8; 1 << 20];
    kill_at(Point::PutClaimed, || {
        let _ = q.put(&big);
    });
    q.put(b"after").unwrap();
    assert_eq!(q.get_timeout(LIMIT).unwrap(), b"after");
    assert_eq!(q.abandoned(), 1);
    for _ in 0..5 {
        q.put(&big).unwrap();
        q.put(b"x").unwrap();
        assert_eq!(q.get_timeout(LIMIT).unwrap(), big);
        assert_eq!(q.get_timeout(LIMIT).unwrap(), b"x");
    }
}

/// A pipe peer SIGKILLed mid-send: the receiver gets what was complete, then Disconnected.
#[test]
fn pipe_peer_killed_mid_send_is_disconnected() {
    let _s = serial();
    let (a, b) = Pipe::anonymous(4, 64).unwrap();
    let pid = fork_child(|| {
        b.send(b"complete").unwrap();
        pause_at(Some(Point::PutWritten));
        let _ = b.send(b"half");
        3
    });
    // The parent never uses `b`: close it, as with multiprocessing.Pipe.
    drop(b);
    wait_stopped(pid);
    kill(pid, libc::SIGKILL);
    assert_eq!(wait_pid(pid, LIMIT), Exit::Signal(libc::SIGKILL));
    assert_eq!(a.recv_timeout(LIMIT).unwrap(), b"complete");
    let start = Instant::now();
    assert_eq!(a.recv_timeout(LIMIT), Err(GetError::Disconnected));
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(!a.peer_connected());
}

/// A peer that dies while this end is parked in `recv` is reported, not waited for.
#[test]
fn pipe_parked_recv_sees_peer_death() {
    let _s = serial();
    let (a, b) = Pipe::anonymous(4, 64).unwrap();
    let pid = fork_child(|| {
        // Holds its copies of both ends (b's token is what the parent watches).
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    drop(b);
    std::thread::scope(|s| {
        let r = s.spawn(|| a.recv_timeout(LIMIT));
        std::thread::sleep(Duration::from_millis(50));
        kill(pid, libc::SIGKILL);
        let start = Instant::now();
        assert_eq!(r.join().unwrap(), Err(GetError::Disconnected));
        assert!(start.elapsed() < Duration::from_secs(2));
    });
    assert_eq!(wait_pid(pid, LIMIT), Exit::Signal(libc::SIGKILL));
}
