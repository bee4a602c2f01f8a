//! Crash atomicity under fire: worker processes hammer two dicts while the test SIGKILLs them
//! at random moments (often inside an operation, holding a stripe lock) and starts
//! replacements. The survivors must keep going, and at the end each dict must equal the model
//! rebuilt from what every worker completed, where the one operation a killed worker had in
//! flight is either fully applied or not at all.
//!
//! Every worker incarnation `w` runs a fixed sequence `op(w, 0), op(w, 1), …` and publishes
//! how many it completed in a shared counter, so the model is exact.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Exit, fork_child, serial, wait_pid};
use shmkit::manager::{DictOptions, ManagerError, SharedDict};
use shmkit::{Element, Segment, testing};

const WORKERS: usize = 4;
const KILLS: usize = 40;
const INCARNATIONS: usize = WORKERS + KILLS;
/// A worker never killed stops after this many operations.
const MAX_OPS: u64 = 60_000;
const COUNTERS: u64 = 3;
const OWN_KEYS: u64 = 6;

/// A value wider than a word, so its updates go through the journal. All words are always
/// equal: a torn write would show.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
struct Big {
    words: [u64; 4],
}

impl Element for Big {
    const TYPE_NAME: &'static str = "dict_kill::Big";
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Count(u64),
    Insert(u64, u64),
    Remove(u64),
    Bump(u64),
    Get(u64),
    BigSet(u64, u64),
    BigBump(u64),
    BigRemove(u64),
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Operation `n` of worker incarnation `w`.
fn op(w: usize, n: u64) -> Op {
    let r = mix(((w as u64) << 40) ^ n);
    let k = (r >> 8) % OWN_KEYS;
    match r % 16 {
        0..=3 => Op::Count((r >> 8) % COUNTERS),
        4 | 5 => Op::Insert(k, n),
        6 => Op::Remove(k),
        7 | 8 => Op::Bump(k),
        9 => Op::Get(k),
        10 | 11 => Op::BigSet(k, n),
        12..=14 => Op::BigBump(k),
        _ => Op::BigRemove(k),
    }
}

fn own(w: usize, k: u64) -> String {
    format!("w{w}-{k}")
}

fn big_key(w: usize, k: u64) -> u64 {
    ((w as u64) << 32) | k
}

struct Dicts {
    small: SharedDict<str, u64>,
    big: SharedDict<u64, Big>,
}

fn apply(d: &Dicts, w: usize, o: Op) -> Result<(), ManagerError> {
    match o {
        Op::Count(c) => drop(d.small.update(&format!("c{c}"), 0, |v| v + 1)?),
        Op::Insert(k, v) => drop(d.small.insert(&own(w, k), v)?),
        Op::Remove(k) => drop(d.small.remove(&own(w, k))?),
        Op::Bump(k) => drop(d.small.update(&own(w, k), 100, |v| v + 1)?),
        Op::Get(k) => drop(d.small.get(&own(w, k))?),
        Op::BigSet(k, v) => drop(d.big.insert(&big_key(w, k), Big { words: [v; 4] })?),
        Op::BigBump(k) => {
            d.big.update(&big_key(w, k), Big { words: [7; 4] }, |b| Big { words: b.words.map(|x| x + 1) })?;
        }
        Op::BigRemove(k) => drop(d.big.remove(&big_key(w, k))?),
    }
    Ok(())
}

/// What worker `w`'s own keys hold after its first `n` operations.
fn model(w: usize, n: u64) -> (HashMap<String, u64>, HashMap<u64, Big>) {
    let (mut small, mut big) = (HashMap::new(), HashMap::new());
    for i in 0..n {
        match op(w, i) {
            Op::Insert(k, v) => drop(small.insert(own(w, k), v)),
            Op::Remove(k) => drop(small.remove(&own(w, k))),
            Op::Bump(k) => *small.entry(own(w, k)).or_insert(100) += 1,
            Op::BigSet(k, v) => drop(big.insert(big_key(w, k), Big { words: [v; 4] })),
            Op::BigBump(k) => {
                let b = big.entry(big_key(w, k)).or_insert(Big { words: [7; 4] });
                b.words = b.words.map(|x| x + 1);
            }
            Op::BigRemove(k) => drop(big.remove(&big_key(w, k))),
            Op::Count(_) | Op::Get(_) => {}
        }
    }
    (small, big)
}

fn dicts() -> Dicts {
    Dicts {
        small: DictOptions::new().max_key_len(16).stripes(4).anonymous(512).unwrap(),
        big: DictOptions::new().stripes(4).anonymous(512).unwrap(),
    }
}

/// Per-incarnation progress counters in an anonymous segment.
struct Progress(Segment);

impl Progress {
    fn new() -> Self {
        Progress(Segment::anonymous(8 * INCARNATIONS).unwrap())
    }

    fn get(&self, w: usize) -> &AtomicU64 {
        assert!(w < INCARNATIONS);
        // SAFETY: the payload holds INCARNATIONS aligned u64 words and is only accessed
        // atomically; it lives as long as `self`.
        unsafe { AtomicU64::from_ptr(self.0.as_ptr().cast::<u64>().add(w)) }
    }
}

fn worker(d: &Dicts, progress: &Progress, w: usize) -> i32 {
    for n in 0..MAX_OPS {
        if let Err(e) = apply(d, w, op(w, n)) {
            // No stdout in a forked child of a test binary: report through the exit code.
            return match e {
                ManagerError::Corrupt { .. } => 20,
                ManagerError::Full { .. } | ManagerError::StripeFull { .. } => 21,
                ManagerError::Lock(_) => 22,
                _ => 23,
            };
        }
        progress.get(w).store(n + 1, Ordering::Release);
    }
    0
}

fn seed() -> u64 {
    mix(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64)
}

/// Check both dicts against the model of every incarnation; returns the operations done.
fn check(d: &Dicts, progress: &Progress, killed: &[bool], seed: u64) -> u64 {
    let small: HashMap<String, u64> = d.small.snapshot().unwrap().into_iter().collect();
    let big: HashMap<u64, Big> = d.big.snapshot().unwrap().into_iter().collect();
    assert_eq!(d.small.len().unwrap(), small.len());
    assert_eq!(d.big.len().unwrap(), big.len());
    let mut counted = [0u64; COUNTERS as usize];
    let mut in_flight = [0u64; COUNTERS as usize];
    let mut ops = 0;
    for (w, &was_killed) in killed.iter().enumerate() {
        let n = progress.get(w).load(Ordering::Acquire);
        ops += n;
        for i in 0..n {
            if let Op::Count(c) = op(w, i) {
                counted[c as usize] += 1;
            }
        }
        if was_killed && let Op::Count(c) = op(w, n) {
            in_flight[c as usize] += 1;
        }
        let prefix = format!("w{w}-");
        let mine_small: HashMap<String, u64> =
            small.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(k, v)| (k.clone(), *v)).collect();
        let mine_big: HashMap<u64, Big> =
            big.iter().filter(|(k, _)| *k >> 32 == w as u64).map(|(k, v)| (*k, *v)).collect();
        let mine = (mine_small, mine_big);
        let ok = mine == model(w, n) || (was_killed && mine == model(w, n + 1));
        assert!(
            ok,
            "worker {w} (killed: {was_killed}, {n} ops done, in flight {:?}) left a state no model explains (seed {seed})",
            op(w, n)
        );
    }
    for c in 0..COUNTERS as usize {
        let got = small.get(&format!("c{c}")).copied().unwrap_or(0);
        assert!(
            (counted[c]..=counted[c] + in_flight[c]).contains(&got),
            "counter c{c} = {got}, completed {} + in flight {} (seed {seed})",
            counted[c],
            in_flight[c]
        );
    }
    ops
}

#[test]
fn random_kills_leave_the_dicts_consistent() {
    let _serial = serial();
    let d = dicts();
    let progress = Progress::new();
    let seed = seed();
    let mut rng = seed;
    let mut next = || {
        rng = mix(rng);
        rng
    };
    let spawn = |w: usize| fork_child(|| worker(&d, &progress, w));
    let mut live: Vec<(usize, libc::pid_t)> = (0..WORKERS).map(|w| (w, spawn(w))).collect();
    let mut killed = vec![false; INCARNATIONS];
    let mut next_w = WORKERS;
    let started = Instant::now();
    while next_w < INCARNATIONS {
        std::thread::sleep(Duration::from_micros(500 + next() % 8000));
        let i = (next() % live.len() as u64) as usize;
        let (w, pid) = live.swap_remove(i);
        common::kill(pid, libc::SIGKILL);
        match wait_pid(pid, Duration::from_secs(30)) {
            Exit::Signal(libc::SIGKILL) => killed[w] = true,
            other => assert_eq!(other, Exit::Code(0), "worker {w} failed (seed {seed})"),
        }
        live.push((next_w, spawn(next_w)));
        next_w += 1;
    }
    for (w, pid) in live {
        assert_eq!(wait_pid(pid, Duration::from_secs(120)), Exit::Code(0), "survivor {w} failed (seed {seed})");
    }
    let elapsed = started.elapsed();
    let ops = check(&d, &progress, &killed, seed);
    let (s, b) = (testing::stats(&d.small), testing::stats(&d.big));
    eprintln!(
        "{} kills, {ops} ops in {elapsed:?}; small dict: {} owner-died locks, {} rollbacks; big dict: {} owner-died, {} rollbacks",
        killed.iter().filter(|k| **k).count(),
        s.owner_died,
        s.rollbacks,
        b.owner_died,
        b.rollbacks
    );
}

enum Stop {
    Stopped,
    Exited(Exit),
}

/// SIGSTOP `pid` and wait until it is stopped (or has exited).
fn stop(pid: libc::pid_t) -> Stop {
    common::kill(pid, libc::SIGSTOP);
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED | libc::WNOHANG) };
        if r == pid {
            if libc::WIFSTOPPED(status) {
                return Stop::Stopped;
            }
            return Stop::Exited(if libc::WIFEXITED(status) {
                Exit::Code(libc::WEXITSTATUS(status))
            } else {
                Exit::Signal(libc::WTERMSIG(status))
            });
        }
        assert!(r == 0, "waitpid: {}", std::io::Error::last_os_error());
        assert!(start.elapsed() < Duration::from_secs(10), "worker {pid} did not stop");
        std::hint::spin_loop();
    }
}

/// The kills land exactly inside operations: one worker runs at a time; the test stops it at
/// random moments and kills it only when a journal shows an operation in flight (it can only
/// be that worker's). Every such kill must be rolled back, and the dicts must match the model.
#[test]
fn kills_inside_the_journal_window_roll_back() {
    let _serial = serial();
    let d = dicts();
    let progress = Progress::new();
    let seed = seed();
    let mut rng = seed;
    let mut precise = 0u64;
    let mut killed = vec![false; INCARNATIONS];
    let deadline = Instant::now() + Duration::from_secs(120);
    for (w, was_killed) in killed.iter_mut().enumerate() {
        let pid = fork_child(|| worker(&d, &progress, w));
        loop {
            rng = mix(rng);
            let pause = Instant::now() + Duration::from_nanos(rng % 20_000);
            while Instant::now() < pause {
                std::hint::spin_loop();
            }
            match stop(pid) {
                Stop::Exited(e) => {
                    assert_eq!(e, Exit::Code(0), "worker {w} failed (seed {seed})");
                    break;
                }
                Stop::Stopped => {}
            }
            if testing::journal_in_flight(&d.small) || testing::journal_in_flight(&d.big) {
                common::kill(pid, libc::SIGKILL);
                assert_eq!(wait_pid(pid, Duration::from_secs(10)), Exit::Signal(libc::SIGKILL));
                *was_killed = true;
                precise += 1;
                // Repair now (a snapshot locks every stripe), so the next worker's journal
                // state is its own.
                d.small.snapshot().unwrap();
                d.big.snapshot().unwrap();
                break;
            }
            common::kill(pid, libc::SIGCONT);
            assert!(Instant::now() < deadline, "no kill inside an operation after 120 s (seed {seed})");
        }
    }
    let ops = check(&d, &progress, &killed, seed);
    let (s, b) = (testing::stats(&d.small), testing::stats(&d.big));
    let mut hit: Vec<String> = (0..INCARNATIONS)
        .filter(|&w| killed[w])
        .map(|w| {
            format!("{:?}", op(w, progress.get(w).load(Ordering::Acquire))).split('(').next().unwrap_or("").to_owned()
        })
        .collect();
    hit.sort();
    hit.dedup();
    eprintln!(
        "{precise} kills inside operations ({}), {ops} ops; small: {} owner-died / {} rollbacks, big: {} / {}",
        hit.join(" "),
        s.owner_died,
        s.rollbacks,
        b.owner_died,
        b.rollbacks
    );
    assert_eq!(s.rollbacks + b.rollbacks, precise, "every kill inside an operation is rolled back");
    assert_eq!(s.owner_died + b.owner_died, precise);
}

/// A process killed while clearing leaves a consistent dict: each remaining entry has its
/// value, the count matches, and clearing again (or inserting) works.
#[test]
fn a_clear_killed_midway_leaves_a_consistent_dict() {
    const N: u64 = 40_000;
    let _serial = serial();
    let fill = |d: &SharedDict<u64, u64>| (0..N).for_each(|k| assert_eq!(d.insert(&k, k * 3).unwrap(), None));
    // How long one clear takes here, to aim the kills inside it.
    let probe: SharedDict<u64, u64> = DictOptions::new().stripes(8).anonymous(N as usize).unwrap();
    fill(&probe);
    let t = Instant::now();
    probe.clear().unwrap();
    let clear_ns = t.elapsed().as_nanos().max(1) as u64;
    assert!(probe.is_empty().unwrap());
    fill(&probe); // every node came back to the free lists
    drop(probe);

    let started = shmkit::SharedAtomic::<u64>::anonymous(0).unwrap();
    let mut rng = seed();
    let mut partial = 0;
    for round in 0..20u64 {
        let d: SharedDict<u64, u64> = DictOptions::new().stripes(8).anonymous(N as usize).unwrap();
        fill(&d);
        started.store(0, Ordering::SeqCst);
        let pid = fork_child(|| {
            started.store(1, Ordering::SeqCst);
            d.clear().map_or(1, |()| 0)
        });
        let t = Instant::now();
        while started.load(Ordering::SeqCst) == 0 {
            assert!(t.elapsed() < Duration::from_secs(10), "the clearing child never started");
            std::hint::spin_loop();
        }
        rng = mix(rng ^ round);
        let aim = Instant::now() + Duration::from_nanos(rng % clear_ns);
        while Instant::now() < aim {
            std::hint::spin_loop();
        }
        common::kill(pid, libc::SIGKILL);
        let exit = wait_pid(pid, Duration::from_secs(10));
        assert!(matches!(exit, Exit::Signal(libc::SIGKILL) | Exit::Code(0)), "{exit:?}");
        let left = d.snapshot().unwrap();
        for (k, v) in &left {
            assert!(*k < N && *v == k * 3, "entry {k} = {v} after a killed clear");
        }
        assert_eq!(d.len().unwrap(), left.len());
        if !left.is_empty() && (left.len() as u64) < N {
            partial += 1;
        }
        d.clear().unwrap();
        assert!(d.is_empty().unwrap() && d.snapshot().unwrap().is_empty());
        fill(&d);
    }
    assert!(partial > 0, "no kill landed inside a clear (one clear takes {clear_ns} ns)");
}
