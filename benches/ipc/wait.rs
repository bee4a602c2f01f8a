//! Blocking waits between two processes: the default (adaptive) policy, parking at once,
//! and the futex floor, including more processes than CPUs. Group `sync`.
//!
//! | figure | what |
//! |---|---|
//! | `semaphore_pingpong_rtt` / `floor_futex_pingpong_rtt` | two semaphores, both sides `WaitPolicy::Park`, rounds interleaved with a raw futex ping-pong: µs per round trip |
//! | `semaphore_pingpong_rtt_default` | the same with plain `acquire()` (the adaptive default): µs |
//! | `event_pingpong_rtt_default` | two `Event`s (`set`, `wait`, `clear`), default policy: µs per round trip |
//! | `barrier_2p_round_default` | a `Barrier` of 2 parties, one per CPU, default policy: µs per round |
//! | `semaphore_pingpong_rtt_oversubscribed` / `floor_futex_pingpong_rtt_oversubscribed` | 4 semaphore (default policy) / raw futex ping-pong pairs at once, every pair's one side on CPU 0 and the other on CPU 1 (8 processes on 2 CPUs): µs per round trip of one pair |
//!
//! Processes are pinned one per CPU (this one on CPU 0, the echo on CPU 1) unless stated.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shmkit::shared::SharedObject;
use shmkit::sync::{Barrier, Event, Semaphore, ShmSafe, WaitPolicy};

use crate::util::{FutexPingPong, Harness, SharedPage, fork_child, fork_on, median, reap_child};

pub fn run(h: &mut Harness) {
    h.group("sync");
    crate::util::pinned(|| run_pinned(h));
}

fn run_pinned(h: &Harness) {
    const ITERS: usize = 2000;
    const ROUNDS: usize = 15;
    if h.wants_any(&["semaphore_pingpong_rtt", "floor_futex_pingpong_rtt"]) {
        // Parked semaphore and futex floor interleaved round by round.
        let (floor, parked) = (FutexPingPong::new(), Pair::<SemPair>::new(WaitPolicy::Park));
        let r = h.interleaved(
            ROUNDS,
            ITERS,
            "us",
            &mut [
                ("floor_futex_pingpong_rtt", &mut |n| floor.round(n)),
                ("semaphore_pingpong_rtt", &mut |n| parked.round(n)),
            ],
        );
        drop((floor, parked));
        h.ratio("semaphore_pingpong_rtt_vs_floor", r[1], r[0]);
    }
    // Each default figure alone: its echo child may spin on CPU 1 while it waits.
    alone::<SemPair>(h, "semaphore_pingpong_rtt_default", ROUNDS, ITERS * 5);
    alone::<EventPair>(h, "event_pingpong_rtt_default", ROUNDS, ITERS * 5);
    alone::<BarrierPair>(h, "barrier_2p_round_default", ROUNDS, ITERS * 5);
    if h.wants_any(&["semaphore_pingpong_rtt_oversubscribed", "floor_futex_pingpong_rtt_oversubscribed"]) {
        oversubscribed(h);
    }
}

fn alone<E: Echo>(h: &Harness, name: &str, rounds: usize, iters: usize) {
    if h.wants(name) {
        let pair = Pair::<E>::new(WaitPolicy::process_default());
        h.interleaved(rounds, iters, "us", &mut [(name, &mut |n| pair.round(n))]);
    }
}

/// One side of a two-process hand-off through a shared `Self`.
trait Echo: ShmSafe + Sized + 'static {
    /// Make the zeroed object usable.
    fn init(&mut self) {}
    /// The echo child: answer one hand-off; `false` once told to stop.
    fn serve(&self, policy: WaitPolicy) -> bool;
    /// This process: one hand-off and its answer.
    fn ask(&self, policy: WaitPolicy);
    /// Make the child's next (or current) `serve` return `false`.
    fn stop(&self);
}

/// An object, and an echo child pinned to CPU 1 serving it until the value is dropped, so
/// rounds can interleave with other candidates'.
struct Pair<E: Echo> {
    obj: SharedObject<E>,
    policy: WaitPolicy,
    child: libc::pid_t,
}

impl<E: Echo> Pair<E> {
    fn new(policy: WaitPolicy) -> Self {
        let obj = SharedObject::<E>::anonymous(E::init).expect("shared object");
        let child = fork_child(|| while obj.serve(policy) {});
        Pair { obj, policy, child }
    }

    /// `iters` hand-offs; the elapsed time.
    fn round(&self, iters: usize) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            self.obj.ask(self.policy);
        }
        start.elapsed()
    }
}

impl<E: Echo> Drop for Pair<E> {
    fn drop(&mut self) {
        self.obj.stop();
        reap_child(self.child);
    }
}

/// Two semaphores and a stop flag.
#[repr(C)]
struct SemPair {
    ping: Semaphore,
    pong: Semaphore,
    stop: AtomicU32,
}

// SAFETY: #[repr(C)], made only of ShmSafe fields (semaphores and an atomic integer).
unsafe impl ShmSafe for SemPair {}

impl Echo for SemPair {
    fn serve(&self, policy: WaitPolicy) -> bool {
        self.ping.acquire_with(policy, None).expect("acquire");
        if self.stop.load(Ordering::Acquire) != 0 {
            return false;
        }
        self.pong.release().expect("release");
        true
    }

    fn ask(&self, policy: WaitPolicy) {
        self.ping.release().expect("release");
        self.pong.acquire_with(policy, None).expect("acquire");
    }

    fn stop(&self) {
        self.stop.store(1, Ordering::Release);
        self.ping.release().expect("release");
    }
}

/// Two events and a stop flag.
#[repr(C)]
struct EventPair {
    ping: Event,
    pong: Event,
    stop: AtomicU32,
}

// SAFETY: #[repr(C)], made only of ShmSafe fields (events and an atomic integer).
unsafe impl ShmSafe for EventPair {}

impl Echo for EventPair {
    fn serve(&self, policy: WaitPolicy) -> bool {
        self.ping.wait_with(policy, None);
        self.ping.clear();
        if self.stop.load(Ordering::Acquire) != 0 {
            return false;
        }
        self.pong.set();
        true
    }

    fn ask(&self, policy: WaitPolicy) {
        self.ping.set();
        self.pong.wait_with(policy, None);
        self.pong.clear();
    }

    fn stop(&self) {
        self.stop.store(1, Ordering::Release);
        self.ping.set();
    }
}

/// A barrier of two parties and a stop flag.
#[repr(C)]
struct BarrierPair {
    barrier: Barrier,
    stop: AtomicU32,
}

// SAFETY: #[repr(C)], made only of ShmSafe fields (a barrier and an atomic integer).
unsafe impl ShmSafe for BarrierPair {}

impl Echo for BarrierPair {
    fn init(&mut self) {
        self.barrier = Barrier::new(2);
    }

    fn serve(&self, policy: WaitPolicy) -> bool {
        self.barrier.wait_with(policy, None).expect("barrier");
        self.stop.load(Ordering::Acquire) == 0
    }

    fn ask(&self, policy: WaitPolicy) {
        self.barrier.wait_with(policy, None).expect("barrier");
    }

    fn stop(&self) {
        self.stop.store(1, Ordering::Release);
        self.barrier.wait().expect("barrier");
    }
}

/// `pairs` pairs at once, each a driver on CPU 0 (running `rounds(iters)` after setting up
/// with `setup`) and its echo on CPU 1; the wall time until every driver finished, per
/// round trip of one pair.
fn concurrent(pairs: usize, iters: usize, setup: &dyn Fn() -> Box<dyn FnMut(usize) -> Duration>) -> f64 {
    let flags = SharedPage::new(4096);
    // SAFETY: zeroed, aligned, shared with the children and outliving them.
    let (ready, go, done) = unsafe {
        let p = flags.ptr();
        (&*p.cast::<AtomicU32>(), &*p.add(64).cast::<AtomicU32>(), &*p.add(128).cast::<AtomicU32>())
    };
    let drivers: Vec<_> = (0..pairs)
        .map(|_| {
            fork_on(Some(0), || {
                let mut round = setup();
                ready.fetch_add(1, Ordering::AcqRel);
                while go.load(Ordering::Acquire) == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
                round(iters);
                done.fetch_add(1, Ordering::AcqRel);
            })
        })
        .collect();
    while ready.load(Ordering::Acquire) < pairs as u32 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let start = Instant::now();
    go.store(1, Ordering::Release);
    while done.load(Ordering::Acquire) < pairs as u32 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = start.elapsed();
    for d in drivers {
        reap_child(d);
    }
    elapsed.as_secs_f64() * 1e6 / iters as f64
}

fn oversubscribed(h: &Harness) {
    const PAIRS: usize = 4;
    const ITERS: usize = 2000;
    const ROUNDS: usize = 7;
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(concurrent(PAIRS, ITERS, &|| {
            let pair = Pair::<SemPair>::new(WaitPolicy::process_default());
            Box::new(move |n| pair.round(n))
        }));
        floor.push(concurrent(PAIRS, ITERS, &|| {
            let pair = FutexPingPong::new();
            Box::new(move |n| pair.round(n))
        }));
    }
    let (ours, floor) = (median(&mut ours), median(&mut floor));
    if h.wants("semaphore_pingpong_rtt_oversubscribed") {
        h.report("semaphore_pingpong_rtt_oversubscribed", ours, "us");
    }
    if h.wants("floor_futex_pingpong_rtt_oversubscribed") {
        h.report("floor_futex_pingpong_rtt_oversubscribed", floor, "us");
    }
    h.ratio("semaphore_pingpong_rtt_oversubscribed_vs_floor", Some(ours), Some(floor));
}
