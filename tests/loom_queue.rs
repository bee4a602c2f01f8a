//! Loom model of the queue ring (`src/channel/ring.rs`), threads standing in for processes.
//!
//! Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=/tmp/target-loom cargo test --release -p shmkit --test loom_queue
//! ```
//!
//! Each model runs every interleaving with up to three preemptions (`PREEMPTIONS`). The
//! models check: every message is delivered exactly once and in order per producer;
//! slot data is never touched by two threads at once (loom cells); a thread that dies at
//! any point of `put` or `get` (its slot lock becomes owner-died, as the kernel makes a
//! robust mutex) leaves the ring usable, losing at most its own message, counted in
//! `abandoned`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shmkit::channel::Point;
use shmkit::channel::model::{ModelRing, Outcome, set_thread_id};

fn put(q: &ModelRing, v: u64) {
    loop {
        match q.try_put(v, None) {
            Outcome::Ok(()) => return,
            Outcome::Retry => thread::yield_now(),
            other => panic!("put {v}: {other:?}"),
        }
    }
}

fn get(q: &ModelRing) -> u64 {
    loop {
        match q.try_get(None) {
            Outcome::Ok(v) => return v,
            Outcome::Retry => thread::yield_now(),
            other => panic!("get: {other:?}"),
        }
    }
}

/// Explore the model with at most `PREEMPTIONS` forced preemptions per execution (the
/// usual loom bound: most concurrency bugs need two or three), so the search finishes.
const PREEMPTIONS: usize = 3;

fn model(f: impl Fn() + Sync + Send + 'static) {
    model_bounded(PREEMPTIONS, f);
}

fn model_bounded(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(preemptions);
    // Waiting threads retry with `yield_now`, which loom counts as branches.
    b.max_branches = 100_000;
    b.check(f);
}

fn spawn<T: Send + 'static>(id: u32, f: impl FnOnce() -> T + Send + 'static) -> thread::JoinHandle<T> {
    thread::spawn(move || {
        set_thread_id(id);
        f()
    })
}

#[test]
fn two_producers_one_consumer() {
    // Two producers race for positions while the consumer takes one look concurrently
    // (spinning consumers are covered by the other models; here they would blow up the
    // search), then drains after the producers are done.
    model(|| {
        set_thread_id(100);
        let q = Arc::new(ModelRing::new(2));
        let p: Vec<_> = (1..=2u64)
            .map(|v| {
                let q = Arc::clone(&q);
                spawn(v as u32, move || put(&q, v))
            })
            .collect();
        let mut got = Vec::new();
        if let Outcome::Ok(v) = q.try_get(None) {
            got.push(v);
        }
        for p in p {
            p.join().unwrap();
        }
        while got.len() < 2 {
            got.push(get(&q));
        }
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
        assert!(q.is_empty());
    });
}

#[test]
fn one_slot_wraps_in_order() {
    model(|| {
        set_thread_id(100);
        let q = Arc::new(ModelRing::new(1));
        let q2 = Arc::clone(&q);
        let p = spawn(1, move || {
            put(&q2, 1);
            put(&q2, 2);
        });
        assert_eq!(get(&q), 1);
        assert_eq!(get(&q), 2);
        p.join().unwrap();
    });
}

#[test]
fn two_consumers_race_for_one_message() {
    model(|| {
        set_thread_id(100);
        let q = Arc::new(ModelRing::new(2));
        put(&q, 7);
        let c: Vec<_> = (1..=2)
            .map(|id| {
                let q = Arc::clone(&q);
                spawn(id, move || q.try_get(None))
            })
            .collect();
        let got: Vec<_> = c.into_iter().map(|c| c.join().unwrap()).collect();
        let taken = got.iter().filter(|o| **o == Outcome::Ok(7)).count();
        assert_eq!(taken, 1, "{got:?}");
    });
}

/// A producer dies at `point` while a consumer waits and another producer puts.
fn producer_dies(point: Point) {
    model(move || {
        set_thread_id(100);
        let q = Arc::new(ModelRing::new(2));
        let q1 = Arc::clone(&q);
        let dying = spawn(1, move || q1.try_put(1, Some(point)));
        let q2 = Arc::clone(&q);
        let consumer = spawn(2, move || get(&q2));
        assert_eq!(dying.join().unwrap(), Outcome::Died);
        put(&q, 2);
        assert_eq!(consumer.join().unwrap(), 2);
        let lost = if point == Point::PutLocked { 0 } else { 1 };
        assert_eq!(q.abandoned(), lost);
        assert!(q.is_empty());
        // The ring goes on: a full lap more.
        put(&q, 3);
        put(&q, 4);
        assert_eq!((get(&q), get(&q)), (3, 4));
    });
}

#[test]
fn producer_dies_holding_lock() {
    producer_dies(Point::PutLocked);
}

#[test]
fn producer_dies_after_claim() {
    producer_dies(Point::PutClaimed);
}

#[test]
fn producer_dies_before_publish() {
    producer_dies(Point::PutWritten);
}

/// A consumer dies at `point` holding the only message while a producer wraps around onto
/// its slot and another consumer waits.
fn consumer_dies(point: Point) {
    model(move || {
        set_thread_id(100);
        let q = Arc::new(ModelRing::new(1));
        put(&q, 1);
        let q1 = Arc::clone(&q);
        let dying = spawn(1, move || q1.try_get(Some(point)));
        let q2 = Arc::clone(&q);
        let producer = spawn(2, move || put(&q2, 2));
        assert_eq!(dying.join().unwrap(), Outcome::Died);
        let first = get(&q);
        producer.join().unwrap();
        if point == Point::GetLocked {
            assert_eq!((first, get(&q)), (1, 2));
            assert_eq!(q.abandoned(), 0);
        } else {
            assert_eq!(first, 2);
            assert_eq!(q.abandoned(), 1);
        }
        assert!(q.is_empty());
    });
}

#[test]
fn consumer_dies_holding_lock() {
    consumer_dies(Point::GetLocked);
}

#[test]
fn consumer_dies_after_claim() {
    consumer_dies(Point::GetClaimed);
}

#[test]
fn consumer_dies_after_read() {
    consumer_dies(Point::GetRead);
}

#[test]
fn close_races_put() {
    model(|| {
        set_thread_id(100);
        let q = Arc::new(ModelRing::new(2));
        let q1 = Arc::clone(&q);
        let p = spawn(1, move || q1.try_put(5, None));
        q.close();
        let put = p.join().unwrap();
        // Either the put won (and its message is drained) or it saw the close.
        match put {
            Outcome::Ok(()) => assert_eq!(q.try_get(None), Outcome::Ok(5)),
            Outcome::Closed => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(q.try_get(None), Outcome::Closed);
    });
}
