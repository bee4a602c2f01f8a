//! Single-process behaviour of `Queue`, `ByteQueue` and `Pipe`: semantics, errors, typed
//! opening, timeouts, and a threaded MPMC smoke test.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use shmkit::SegmentError;
use shmkit::channel::{ByteQueue, GetError, Pipe, PipeError, PutError, Queue};

#[test]
fn fifo_full_empty_len() {
    let q = Queue::<u64>::anonymous(3).unwrap();
    assert_eq!((q.capacity(), q.len(), q.is_empty()), (3, 0, true));
    assert_eq!(q.try_get(), Err(GetError::Empty));
    for v in 1..=3 {
        q.try_put(v).unwrap();
    }
    assert_eq!(q.len(), 3);
    assert!(matches!(q.try_put(4), Err(PutError::Full(4))));
    assert_eq!(q.try_get(), Ok(1));
    q.try_put(4).unwrap();
    assert_eq!((q.get(), q.get(), q.get()), (Ok(2), Ok(3), Ok(4)));
    assert!(q.is_empty());
    // Many laps around a ring whose capacity is not a power of two.
    for v in 0..1000u64 {
        q.put(v).unwrap();
        q.put(v + 1).unwrap();
        assert_eq!((q.get(), q.get()), (Ok(v), Ok(v + 1)));
    }
    assert_eq!(q.abandoned(), 0);
}

#[test]
fn capacity_one() {
    let q = Queue::<u8>::anonymous(1).unwrap();
    for v in 0..=255u8 {
        q.try_put(v).unwrap();
        assert!(matches!(q.try_put(v), Err(PutError::Full(_))));
        assert_eq!(q.try_get(), Ok(v));
        assert_eq!(q.try_get(), Err(GetError::Empty));
    }
}

#[test]
fn close_then_drain() {
    let q = Queue::<i32>::anonymous(4).unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    assert!(q.close());
    assert!(!q.close());
    assert!(q.is_closed());
    assert!(matches!(q.put(3), Err(PutError::Closed(3))));
    assert!(matches!(q.try_put(3), Err(PutError::Closed(3))));
    assert_eq!((q.get(), q.get()), (Ok(1), Ok(2)));
    assert_eq!(q.get(), Err(GetError::Closed));
    assert_eq!(q.try_get(), Err(GetError::Closed));
    assert_eq!(q.get_timeout(Duration::from_millis(1)), Err(GetError::Closed));
}

#[test]
fn close_wakes_parked_getters() {
    let q = Arc::new(Queue::<u32>::anonymous(2).unwrap());
    let q2 = Arc::clone(&q);
    let t = std::thread::spawn(move || q2.get());
    std::thread::sleep(Duration::from_millis(30));
    q.close();
    assert_eq!(t.join().unwrap(), Err(GetError::Closed));
}

#[test]
fn timeouts() {
    let q = Queue::<u16>::anonymous(1).unwrap();
    let start = Instant::now();
    assert_eq!(q.get_timeout(Duration::from_millis(30)), Err(GetError::Timeout));
    assert!(start.elapsed() >= Duration::from_millis(30));
    q.put(1).unwrap();
    let start = Instant::now();
    assert!(matches!(q.put_timeout(2, Duration::from_millis(30)), Err(PutError::Timeout(2))));
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn named_open_checks_type_and_kind() {
    let q = Queue::<f64>::create(None, 8).unwrap();
    let name = q.name().unwrap().to_owned();
    let peer = Queue::<f64>::open(&name).unwrap();
    q.put(2.5).unwrap();
    assert_eq!(peer.get(), Ok(2.5));
    assert_eq!(peer.capacity(), 8);
    assert!(matches!(Queue::<u64>::open(&name), Err(SegmentError::TypeMismatch { .. })));
    assert!(matches!(ByteQueue::open(&name), Err(SegmentError::TypeMismatch { .. })));
    assert!(matches!(Pipe::open(&name), Err(PipeError::Segment(SegmentError::TypeMismatch { .. }))));
    assert!(matches!(shmkit::SharedArray::<f64>::open(&name), Err(SegmentError::KindMismatch { .. })));
    let arr = shmkit::SharedArray::<f64>::create(None, 8).unwrap();
    assert!(matches!(Queue::<f64>::open(arr.name().unwrap()), Err(SegmentError::KindMismatch { .. })));
    assert!(matches!(Queue::<f64>::anonymous(0), Err(SegmentError::ZeroLength)));
    drop((q, peer));
    assert!(!common::exists(&name));
}

#[test]
fn error_messages_say_what_to_do() {
    let q = Queue::<u8>::anonymous(1).unwrap();
    q.put(0).unwrap();
    let e = q.try_put(1).unwrap_err();
    assert!(e.to_string().contains("full"), "{e}");
    assert_eq!(format!("{e:?}"), "Full(..)");
    assert_eq!(e.into_inner(), 1);
    let b = ByteQueue::anonymous(1, 4).unwrap();
    let e = b.put(b"12345").unwrap_err();
    assert!(matches!(e, PutError::TooLarge { len: 5, max: 4, .. }));
    assert!(e.to_string().contains("max_message"), "{e}");
}

#[test]
fn byte_queue_messages() {
    let q = ByteQueue::create(None, 4, 100).unwrap();
    let peer = ByteQueue::open(q.name().unwrap()).unwrap();
    assert_eq!(peer.max_message(), 100);
    q.put(b"").unwrap();
    q.put(&[7u8; 100]).unwrap();
    q.put(b"abc").unwrap();
    assert!(matches!(q.put(&[0u8; 101]), Err(PutError::TooLarge { len: 101, max: 100, .. })));
    assert_eq!(peer.get().unwrap(), b"");
    let mut buf = Vec::new();
    assert_eq!(peer.get_into(&mut buf), Ok(100));
    assert_eq!(buf, [7u8; 100]);
    assert_eq!(peer.try_get_with(|m| m.to_ascii_uppercase()), Ok(b"ABC".to_vec()));
    assert_eq!(peer.try_get(), Err(GetError::Empty));
    assert!(matches!(Queue::<u8>::open(q.name().unwrap()), Err(SegmentError::TypeMismatch { .. })));
}

#[test]
fn pipe_duplex_and_hangup() {
    let (a, b) = Pipe::anonymous(2, 16).unwrap();
    assert!(a.peer_connected() && b.peer_connected());
    a.send(b"1").unwrap();
    a.send(b"2").unwrap();
    assert!(matches!(a.try_send(b"3"), Err(PutError::Full(_))));
    b.send(b"x").unwrap();
    assert_eq!(a.recv_timeout(Duration::from_secs(1)).unwrap(), b"x");
    assert_eq!(b.try_recv().unwrap(), b"1");
    drop(a);
    // What was sent before the hang-up still arrives, then Disconnected.
    assert_eq!(b.recv().unwrap(), b"2");
    assert_eq!(b.recv(), Err(GetError::Disconnected));
    assert_eq!(b.try_recv(), Err(GetError::Disconnected));
    assert!(!b.peer_connected());
    b.send(b"1").unwrap();
    b.send(b"2").unwrap();
    assert!(matches!(b.send(b"3"), Err(PutError::Disconnected(_))));
}

#[test]
fn named_pipe_connects_once() {
    let a = Pipe::create(None, 2, 8).unwrap();
    let name = a.name().unwrap().to_owned();
    assert!(!a.peer_connected());
    // Before the peer connects, a receive waits (it does not report a hang-up).
    assert_eq!(a.recv_timeout(Duration::from_millis(20)), Err(GetError::Timeout));
    let b = Pipe::open(&name).unwrap();
    assert!(matches!(Pipe::open(&name), Err(PipeError::EndTaken { .. })));
    b.send(b"hi").unwrap();
    assert_eq!(a.recv().unwrap(), b"hi");
    drop(b);
    assert!(matches!(Pipe::open(&name), Err(PipeError::EndTaken { .. })));
    assert_eq!(a.recv(), Err(GetError::Disconnected));
    drop(a);
    assert!(!common::exists(&name));
}

#[test]
fn parked_recv_sees_hangup_promptly() {
    let (a, b) = Pipe::anonymous(2, 16).unwrap();
    let t = std::thread::spawn(move || {
        let start = Instant::now();
        (b.recv(), start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(30));
    drop(a);
    let (r, waited) = t.join().unwrap();
    assert_eq!(r, Err(GetError::Disconnected));
    assert!(waited < Duration::from_secs(2));
}

#[test]
fn threads_mpmc_exactly_once() {
    const PRODUCERS: u64 = 3;
    const PER: u64 = 20_000;
    let q = Arc::new(Queue::<u64>::anonymous(7).unwrap());
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let q = Arc::clone(&q);
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while let Ok(v) = q.get() {
                    got.push(v);
                }
                got
            })
        })
        .collect();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let q = Arc::clone(&q);
            std::thread::spawn(move || {
                for i in 0..PER {
                    q.put(p << 32 | i).unwrap();
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    q.close();
    let mut all: Vec<u64> = consumers.into_iter().flat_map(|c| c.join().unwrap()).collect();
    assert_eq!(all.len() as u64, PRODUCERS * PER);
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len() as u64, PRODUCERS * PER, "a message was delivered twice");
}
