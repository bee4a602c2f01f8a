//! `open_or_create` (exactly one creator among racing processes, typed mismatches, a
//! creator killed mid-initialisation) and `SegmentOptions::wait_for` (an opener started
//! before its creator).

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Exit, exists, fork_child, serial, unique_name, wait_pid, wait_stopped};
use shmkit::channel::{ByteQueue, Queue};
use shmkit::{Segment, SegmentError, SegmentOptions, SharedArray, SharedValue};

const N: usize = 8;

/// N forked processes pass a start gate together, then call `open_or_create` on one name:
/// exactly one creates, all see the value it initialised, and the name is gone after.
#[test]
fn racing_processes_create_exactly_once() {
    let _s = serial();
    for round in 0..5 {
        let name = unique_name("ooc-race");
        // [0] ready count, [1] go, [2] opened count, then per child: created flag, value seen.
        let board = SharedArray::<u64>::anonymous(3 + 2 * N).unwrap();
        let pids: Vec<_> = (0..N)
            .map(|i| {
                let (board, name) = (&board, name.as_str());
                fork_child(move || {
                    let b = board.atomics(..).unwrap();
                    b[0].fetch_add(1, Ordering::SeqCst);
                    let t = Instant::now();
                    while b[1].load(Ordering::SeqCst) == 0 {
                        if t.elapsed() > Duration::from_secs(20) {
                            return 2;
                        }
                        std::hint::spin_loop();
                    }
                    let me = u64::from(std::process::id());
                    let v = match SharedValue::<u64>::open_or_create(name, me) {
                        Ok(v) => v,
                        Err(_) => return 3,
                    };
                    b[3 + 2 * i].store(u64::from(v.segment().created()), Ordering::SeqCst);
                    b[4 + 2 * i].store(v.get().unwrap_or(0), Ordering::SeqCst);
                    // Hold the segment until everyone has it: a creator that left early
                    // would unlink the name and let a late process create a second one.
                    b[2].fetch_add(1, Ordering::SeqCst);
                    while b[2].load(Ordering::SeqCst) < N as u64 {
                        if t.elapsed() > Duration::from_secs(20) {
                            return 4;
                        }
                        std::thread::yield_now();
                    }
                    0
                })
            })
            .collect();
        let b = board.atomics(..).unwrap();
        common::wait_until("every child at the gate", Duration::from_secs(20), || {
            b[0].load(Ordering::SeqCst) == N as u64
        });
        b[1].store(1, Ordering::SeqCst);
        for pid in pids {
            assert_eq!(wait_pid(pid, Duration::from_secs(30)), Exit::Code(0), "round {round}");
        }
        let created: Vec<u64> = (0..N).map(|i| b[3 + 2 * i].load(Ordering::SeqCst)).collect();
        let seen: Vec<u64> = (0..N).map(|i| b[4 + 2 * i].load(Ordering::SeqCst)).collect();
        assert_eq!(created.iter().sum::<u64>(), 1, "round {round}: exactly one creator: {created:?}");
        assert!(seen.iter().all(|&v| v == seen[0] && v != 0), "round {round}: all agree: {seen:?}");
        assert!(!exists(&name), "round {round}: the creator unlinked the name, nothing leaked");
    }
}

#[test]
fn what_exists_must_match_kind_type_and_size() {
    let name = unique_name("ooc-mismatch");
    let a = SharedArray::<f32>::create(Some(&name), 10).unwrap();
    match SharedArray::<f64>::open_or_create(&name, 10) {
        Err(SegmentError::TypeMismatch { expected, found, .. }) => {
            assert_eq!((expected.name.as_str(), found.name.as_str()), ("f64", "f32"));
        }
        other => panic!("f64 over an f32 array: {other:?}"),
    }
    match SharedArray::<f32>::open_or_create(&name, 11) {
        Err(e @ SegmentError::SizeMismatch { expected: 11, found: 10, .. }) => {
            assert!(e.to_string().contains("holds 10 elements, not 11"), "{e}");
        }
        other => panic!("11 elements over 10: {other:?}"),
    }
    assert!(matches!(SharedValue::<f32>::open_or_create(&name, 0.0), Err(SegmentError::KindMismatch { .. })));
    assert!(matches!(Segment::open_or_create(&name, 40), Err(SegmentError::KindMismatch { .. })));
    let b = SharedArray::<f32>::open_or_create(&name, 10).unwrap();
    assert!(a.segment().created() && !b.segment().created());
    drop((a, b));
    assert!(!exists(&name));

    // Queues: the capacity, and the largest message even when the slot stride is the same.
    let q = ByteQueue::create(Some(&name), 4, 100).unwrap();
    let e = ByteQueue::open_or_create(&name, 4, 101).unwrap_err();
    assert!(matches!(e, SegmentError::SizeMismatch { expected: 101, found: 100, .. }), "{e:?}");
    let e = ByteQueue::open_or_create(&name, 5, 100).unwrap_err();
    assert!(matches!(e, SegmentError::SizeMismatch { expected: 5, found: 4, .. }), "{e:?}");
    assert!(matches!(Queue::<u64>::open_or_create(&name, 4), Err(SegmentError::TypeMismatch { .. })));
    assert!(ByteQueue::open_or_create(&name, 4, 100).is_ok());
    drop(q);
    assert!(!exists(&name));
}

/// A creator stopped after writing its header and before publishing, then SIGKILLed: the
/// others get a bounded, typed `InitTimeout`; once they let go the file is stale, and
/// `remove_if_stale` clears the way for a new creator.
#[test]
fn a_creator_killed_mid_initialisation_gives_a_bounded_typed_error() {
    let _s = serial();
    let name = unique_name("ooc-killed");
    let pid = fork_child({
        let name = name.clone();
        move || {
            shmkit::testing::stop_before_publish();
            let _ = SharedArray::<u64>::open_or_create(&name, 8);
            1
        }
    });
    wait_stopped(pid);
    common::kill(pid, libc::SIGKILL);
    assert_eq!(wait_pid(pid, Duration::from_secs(10)), Exit::Signal(libc::SIGKILL));
    assert!(exists(&name), "the dead creator left its unpublished file");
    let quick = SegmentOptions::new().open_timeout(Duration::from_millis(300));
    let t = Instant::now();
    let e = SharedArray::<u64>::open_or_create_with(&quick, &name, 8).unwrap_err();
    assert!(matches!(e, SegmentError::InitTimeout { .. }), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "bounded: {:?}", t.elapsed());
    let e = SharedValue::<u64>::open_with(&quick, &name).unwrap_err();
    assert!(matches!(e, SegmentError::InitTimeout { .. }), "plain open too: {e:?}");
    assert!(shmkit::segment::remove_if_stale(&name).unwrap(), "nobody holds it: stale");
    let a = SharedArray::<u64>::open_or_create(&name, 8).unwrap();
    assert!(a.segment().created());
    drop(a);
    assert!(!exists(&name));
}

/// An opener started before its creator waits for the name with `wait_for`.
#[test]
fn wait_for_lets_the_opener_start_first() {
    let _s = serial();
    let name = unique_name("ooc-wait");
    let t = Instant::now();
    assert!(matches!(SharedValue::<u64>::open(&name), Err(SegmentError::NotFound { .. })));
    let short = SegmentOptions::new().wait_for(Duration::from_millis(200));
    assert!(matches!(SharedValue::<u64>::open_with(&short, &name), Err(SegmentError::NotFound { .. })));
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(200) && waited < Duration::from_secs(5), "{waited:?}");
    let opener = fork_child({
        let name = name.clone();
        move || {
            let opts = SegmentOptions::new().wait_for(Duration::from_secs(20));
            match SharedValue::<u64>::open_with(&opts, &name) {
                Ok(v) if v.get().ok() == Some(7) => 0,
                Ok(_) => 1,
                Err(_) => 2,
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let v = SharedValue::<u64>::create(Some(&name), 7).unwrap();
    assert_eq!(wait_pid(opener, Duration::from_secs(30)), Exit::Code(0));
    let raw = Segment::create_raw(None, 16).unwrap();
    let opts = SegmentOptions::new().wait_for(Duration::from_secs(1));
    assert_eq!(opts.open_raw(raw.name().unwrap()).unwrap().len(), 16, "open_raw honours it too");
    drop((v, raw));
    assert!(!exists(&name));
}
