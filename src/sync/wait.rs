//! [`WaitPolicy`] and the one spin-then-park mechanism every blocking wait of the crate
//! runs: semaphores, events, condition variables, barriers, mutexes, read-write locks,
//! queues and pipes, pool results and range claims.
//!
//! # The adaptive policy (the default)
//!
//! A wait first *spins*: it looks at its condition with `spin_loop` hints between looks,
//! as densely as its [`Cadence`] says, for the first [`PURE_SPIN`], then gives the CPU
//! away (`sched_yield`) between looks, for a budget; then
//! it *parks* in the kernel (the caller's own futex protocol). The budget adapts, per
//! process and per waited-on object (64 buckets keyed by the object's address), to how
//! long waits actually take, as glibc's adaptive mutex keeps a moving average:
//!
//! | a wait …                                          | next budget                                   |
//! |---------------------------------------------------|-----------------------------------------------|
//! | ends while spinning, after `t`                     | moves a quarter of the way to `2t` (at least [`MIN_SPIN`]) |
//! | parks and ends after `t` ≤ [`MAX_SPIN`]            | moves a quarter of the way to `2t`: a longer spin would have caught it |
//! | parks and ends after `t` > [`MAX_SPIN`] (or times out) | halves: spinning does not pay for these waits |
//! | sees a `sched_yield` give the CPU to another thread | a quarter, and the next [`COOL_DOWN`] waits park at once |
//!
//! The last row is the oversubscription guard: a yield that lets another thread run (it
//! takes longer than [`YIELD_GAVE_AWAY`]) means that a runnable thread — quite possibly
//! the very peer we wait for — needs this CPU, so spinning on it costs more than it saves.
//! With more runnable processes than CPUs the budget collapses and waits park at once,
//! probing with a spin only once every [`COOL_DOWN`] waits. On a machine with one online
//! CPU the adaptive policy never spins. A budget below [`MIN_SPIN`] parks at once.
//!
//! The state is process-local (a static table): nothing of it lives in shared memory, so
//! no shared layout changed, and a peer's bytes cannot influence it.
//!
//! # Deadlines
//!
//! The spin phase ends at the caller's deadline as well as at its budget, and the budget
//! is at most [`MAX_SPIN`], so a timed or `try_` call returns by its deadline whatever a
//! stopped peer does.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::sys::Deadline;

/// How a blocking wait behaves before it sleeps in the kernel.
///
/// The default, [`WaitPolicy::Adaptive`], suits most deployments: fast hand-offs between
/// processes that each have a CPU, and no spinning when processes outnumber CPUs. Choose
/// [`WaitPolicy::Park`] to never burn CPU while waiting (many more waiters than CPUs, or a
/// battery), or [`WaitPolicy::Spin`] for a fixed budget when you know your deployment
/// (processes pinned one per CPU, latency above all).
///
/// Set it for the whole process with [`WaitPolicy::set_process_default`], per handle on
/// queues and pipes (`set_wait_policy`), or per call (`Semaphore::acquire_with`,
/// `Event::wait_with`, `Barrier::wait_with`, `Condvar::wait_with`).
///
/// ```
/// use std::time::Duration;
/// use shmkit::sync::{Semaphore, WaitPolicy};
///
/// let sem = Semaphore::new(1);
/// sem.acquire_with(WaitPolicy::Spin(Duration::from_micros(50)), None)?;
/// sem.release()?;
/// sem.acquire_with(WaitPolicy::Park, Some(Duration::from_millis(10)))?;
/// assert_eq!(WaitPolicy::process_default(), WaitPolicy::Adaptive);
/// # Ok::<(), shmkit::LockError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitPolicy {
    /// Spin with back-off (the first [`PURE_SPIN`]), then yield, for a budget that adapts
    /// to how long this process's waits on the object take (from [`INITIAL_SPIN`], at
    /// most [`MAX_SPIN`], parking at once below [`MIN_SPIN`]); after a yield that gave the
    /// CPU to another thread (processes outnumber CPUs) the next waits park at once. On
    /// one CPU it never spins. The rules are in `src/sync/README.md`.
    #[default]
    Adaptive,
    /// Spin (the first [`PURE_SPIN`] busy, then yielding the CPU between looks) for up to
    /// this long, then park. `Spin(Duration::ZERO)` is [`WaitPolicy::Park`].
    Spin(Duration),
    /// Park in the kernel at once: no CPU spent waiting, a kernel wake-up per hand-off.
    Park,
}

/// Within a spin phase, how long to spin without yielding the CPU.
pub const PURE_SPIN: Duration = Duration::from_micros(2);
/// The adaptive budget's ceiling (and its value after long waits that were just missed).
pub const MAX_SPIN: Duration = Duration::from_micros(100);
/// Budgets below this park at once; waits that end spinning keep at least this one.
pub const MIN_SPIN: Duration = Duration::from_micros(1);
/// The adaptive budget of an object this process has not waited on yet.
pub const INITIAL_SPIN: Duration = Duration::from_micros(20);
/// A `sched_yield` that takes longer than this let another thread run on this CPU.
pub const YIELD_GAVE_AWAY: Duration = Duration::from_micros(5);
/// Waits that park at once after a yield gave the CPU away.
pub const COOL_DOWN: u32 = 32;

/// The process default, encoded: `u64::MAX` adaptive, otherwise a spin budget in ns
/// (0: park).
static PROCESS_DEFAULT: AtomicU64 = AtomicU64::new(u64::MAX);

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1)
}

impl WaitPolicy {
    /// The policy of every wait in this process that was not given one (initially
    /// [`WaitPolicy::Adaptive`]).
    pub fn process_default() -> WaitPolicy {
        match PROCESS_DEFAULT.load(Relaxed) {
            u64::MAX => WaitPolicy::Adaptive,
            0 => WaitPolicy::Park,
            ns => WaitPolicy::Spin(Duration::from_nanos(ns)),
        }
    }

    /// Set the policy of every wait in this process that is not given one (a forked child
    /// inherits it; other processes keep their own).
    pub fn set_process_default(policy: WaitPolicy) {
        let code = match policy {
            WaitPolicy::Adaptive => u64::MAX,
            WaitPolicy::Park => 0,
            WaitPolicy::Spin(d) => nanos(d),
        };
        PROCESS_DEFAULT.store(code, Relaxed);
    }
}

/// The adaptive state of one bucket: budget in ns (low half), waits left to park at once
/// (high half).
struct Bucket(AtomicU64);

const BUCKETS: usize = 64;
static TABLE: [Bucket; BUCKETS] = [const { Bucket(AtomicU64::new(INITIAL_SPIN.as_nanos() as u64)) }; BUCKETS];

fn bucket(key: usize) -> &'static Bucket {
    // Fibonacci hashing of the address (objects are at least 4-aligned).
    let h = ((key as u64) >> 2).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - 6);
    &TABLE[h as usize % BUCKETS]
}

/// What the spin phase of one wait saw, for the adaptation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// The condition held after this long of spinning.
    Spun(Duration),
    /// The wait parked and ended (or timed out) after this long in all.
    Parked(Duration),
    /// A yield gave the CPU to another thread.
    Contended,
}

impl Bucket {
    /// The spin budget for the next wait (zero: park at once); counts a cooling-down wait.
    fn budget(&self) -> Duration {
        let s = self.0.load(Relaxed);
        let (budget, cool) = (s as u32, (s >> 32) as u32);
        if cool > 0 {
            self.0.store(s - (1 << 32), Relaxed);
            return Duration::ZERO;
        }
        Duration::from_nanos(budget as u64)
    }

    /// Adapt the budget to what a wait saw. Racing updates from other threads may be lost:
    /// it is a hint, not a count.
    fn learn(&self, what: Outcome) {
        let s = self.0.load(Relaxed);
        let (budget, cool) = (s as u32 as u64, (s >> 32) as u32);
        let toward = |t: Duration| {
            let target = nanos(t).saturating_mul(2).clamp(nanos(MIN_SPIN), nanos(MAX_SPIN));
            (3 * budget + target) / 4
        };
        let (budget, cool) = match what {
            Outcome::Spun(t) => (toward(t).max(nanos(MIN_SPIN)), cool),
            Outcome::Parked(t) if t <= MAX_SPIN => (toward(t), cool),
            Outcome::Parked(_) => (budget / 2, cool),
            Outcome::Contended => (budget / 4, COOL_DOWN),
        };
        self.0.store((cool as u64) << 32 | budget.min(nanos(MAX_SPIN)), Relaxed);
    }
}

/// How densely a spinning wait looks at its condition: a trade of hand-off latency
/// against the cost each look puts on the side that is about to end the wait.
///
/// A look pulls the shared cache line it reads away from the writer. A peer that ends the
/// wait with one store (a semaphore's release, an event's set) loses nothing to it, and
/// the sooner we look, the sooner we answer. A queue's producer instead writes the slot it
/// fills several times (its lock, its stamp, the unlock): a consumer looking every few
/// nanoseconds makes each of those writes a cache miss: `queue_8b_1to1` fell from 10.5 to
/// 7.3 Mmsg/s with the hand-off cadence (medians of 8 interleaved runs of each build, on the
/// machine of `BENCHMARKS.md`), and is at 9.0–9.9 with [`Cadence::Stream`] (the build
/// before the adaptive policy: 9.9–10.5 in the same runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cadence {
    /// Look at once, then after 1, 2, 4 … 64 `spin_loop` hints (semaphores, events,
    /// barriers, condition variables, pipes, pool results, claims): a reply is seen within
    /// a few hints of its arrival.
    HandOff,
    /// Look after [`STREAM_GAP`] `spin_loop` hints, then after 32, then every 64 (queues,
    /// contended mutexes): the writer finishes its several writes to the line undisturbed.
    Stream,
}

/// `spin_loop` hints before a [`Cadence::Stream`] wait first looks (about 1 µs on the
/// machines of `BENCHMARKS.md`).
pub(crate) const STREAM_GAP: u32 = 32;

impl Cadence {
    /// Hints before the first look, and between the first two.
    fn gaps(self) -> (u32, u32) {
        match self {
            Cadence::HandOff => (0, 1),
            Cadence::Stream => (STREAM_GAP, STREAM_GAP),
        }
    }
}

fn pause(hints: u32) {
    for _ in 0..hints {
        std::hint::spin_loop();
    }
}

/// Run one blocking wait under `policy` (for the object at address `key`): spin while
/// `ready` returns `None`, looking as `cadence` says — until the budget or `deadline` runs
/// out — then call `park`, the caller's own parking loop, and return what it returns.
/// Under loom every policy is [`Park`](WaitPolicy::Park): a model has no time to spin in.
pub(crate) fn spin_then<R>(
    policy: WaitPolicy,
    cadence: Cadence,
    key: usize,
    deadline: &Deadline,
    mut ready: impl FnMut() -> Option<R>,
    park: impl FnOnce() -> R,
) -> R {
    use std::time::Instant;
    let policy = if cfg!(loom) { WaitPolicy::Park } else { policy };
    let adaptive = policy == WaitPolicy::Adaptive;
    let (budget, site) = match policy {
        WaitPolicy::Adaptive if crate::sys::sched::online_cpus() < 2 => (Duration::ZERO, None),
        WaitPolicy::Adaptive => {
            let b = bucket(key);
            (b.budget(), Some(b))
        }
        WaitPolicy::Spin(d) => (d, None),
        WaitPolicy::Park => (Duration::ZERO, None),
    };
    let start = Instant::now();
    if budget >= MIN_SPIN || (!adaptive && !budget.is_zero()) {
        let (first, mut backoff) = cadence.gaps();
        pause(first);
        loop {
            if let Some(r) = ready() {
                if let Some(b) = site {
                    b.learn(Outcome::Spun(start.elapsed()));
                }
                return r;
            }
            let spent = start.elapsed();
            if spent >= budget || deadline.passed() {
                break;
            }
            if spent < PURE_SPIN {
                pause(backoff);
                backoff = (backoff * 2).min(64);
            } else {
                let before = Instant::now();
                crate::sys::sched::yield_now();
                if adaptive && before.elapsed() > YIELD_GAVE_AWAY {
                    // Somebody else wanted this CPU: spinning here is what oversubscribed
                    // machines must not do. One more look, then park.
                    if let Some(b) = site {
                        b.learn(Outcome::Contended);
                    }
                    if let Some(r) = ready() {
                        return r;
                    }
                    return park();
                }
            }
        }
    }
    let r = park();
    if let Some(b) = site {
        b.learn(Outcome::Parked(start.elapsed()));
    }
    r
}

/// The address of `x`, as the key of its adaptive state.
pub(crate) fn key_of<T>(x: &T) -> usize {
    std::ptr::from_ref(x) as usize
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn fresh() -> Bucket {
        Bucket(AtomicU64::new(nanos(INITIAL_SPIN)))
    }

    #[test]
    fn quick_waits_keep_a_budget_that_covers_them() {
        let b = fresh();
        for _ in 0..50 {
            b.learn(Outcome::Spun(Duration::from_nanos(100)));
        }
        assert_eq!(b.budget(), MIN_SPIN);
        for _ in 0..50 {
            b.learn(Outcome::Spun(Duration::from_micros(30)));
        }
        let got = b.budget();
        assert!(got > Duration::from_micros(50) && got <= MAX_SPIN, "{got:?}");
    }

    #[test]
    fn waits_just_missed_grow_the_budget_and_long_ones_shrink_it_to_parking() {
        let b = fresh();
        for _ in 0..50 {
            b.learn(Outcome::Parked(Duration::from_micros(45)));
        }
        assert!(b.budget() >= Duration::from_micros(85), "{:?}", b.budget());
        for _ in 0..50 {
            b.learn(Outcome::Parked(Duration::from_millis(5)));
        }
        assert!(b.budget() < MIN_SPIN, "{:?}", b.budget());
    }

    #[test]
    fn a_yield_that_gave_the_cpu_away_parks_the_next_waits_at_once() {
        let b = fresh();
        b.learn(Outcome::Contended);
        for _ in 0..COOL_DOWN {
            assert_eq!(b.budget(), Duration::ZERO);
        }
        assert_eq!(b.budget(), INITIAL_SPIN / 4);
        for _ in 0..4 {
            b.learn(Outcome::Contended);
            for _ in 0..COOL_DOWN {
                b.budget();
            }
        }
        assert!(b.budget() < MIN_SPIN, "repeated contention collapses the budget");
    }

    #[test]
    fn the_process_default_round_trips() {
        for p in [WaitPolicy::Park, WaitPolicy::Spin(Duration::from_micros(7)), WaitPolicy::Adaptive] {
            WaitPolicy::set_process_default(p);
            assert_eq!(WaitPolicy::process_default(), p);
        }
    }

    #[test]
    fn every_policy_spins_no_longer_than_the_deadline_and_parks_after() {
        for p in [WaitPolicy::Adaptive, WaitPolicy::Spin(Duration::from_secs(60)), WaitPolicy::Park] {
            for c in [Cadence::HandOff, Cadence::Stream] {
                for ms in [20, 0] {
                    let deadline = Deadline::after(Duration::from_millis(ms));
                    let t = std::time::Instant::now();
                    let parked = spin_then(p, c, 8, &deadline, || None::<bool>, || true);
                    assert!(parked, "{p:?} {c:?}: parked after the spin");
                    assert!(t.elapsed() < Duration::from_secs(5), "{p:?} {c:?} spun {:?}", t.elapsed());
                }
            }
        }
        let hit = spin_then(
            WaitPolicy::Spin(Duration::from_secs(60)),
            Cadence::Stream,
            8,
            &Deadline::never(),
            || Some(1),
            || 2,
        );
        assert_eq!(hit, 1);
    }
}
