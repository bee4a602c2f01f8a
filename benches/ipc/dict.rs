//! `SharedDict::update` from two processes, against robust pthread mutexes doing the same job.
//!
//! | figure                           | what is measured                                                          |
//! |----------------------------------|---------------------------------------------------------------------------|
//! | `dict_update_2p_one_key`         | 2 forked processes × 1 M `update("count", 0, \|v\| v + 1)` on one `SharedDict<str, u64>` key: million updates/s |
//! | `floor_mutex_2p_one_lock`        | 2 processes × 1 M (lock one robust process-shared pthread mutex, `+= 1`, unlock): millions/s |
//! | `dict_update_2p_random_keys`     | the same with keys drawn at random from 4096 (`"k0"` … `"k4095"`) in a dict of capacity 8192 (64 stripes) |
//! | `floor_mutex_2p_64_locks`        | 2 processes × 1 M (lock mutex `i % 64` of 64, bump counter `i` of 4096, unlock), random `i`: millions/s |
//!
//! Each process is pinned to its own CPU, so the two really run at the same time. The floors
//! are what lock striping costs at the least (the same robust mutex, no hashing,
//! no lookup, no journal). Python's counterpart: `benches/python/dict.py`
//! (`Manager().dict()` with a `Manager().Lock()`, about a thousand times slower).

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shmkit::Segment;
use shmkit::manager::{DictOptions, SharedDict};
use shmkit::sync::RawMutex;

use crate::util::{Harness, fork_on, median, reap_child};

const UPDATES: u64 = 1_000_000;
const ROUNDS: usize = 5;
const KEYS: usize = 4096;
const STRIPES: usize = 64;

pub fn run(h: &mut Harness) {
    h.group("dict");
    let names =
        ["dict_update_2p_one_key", "floor_mutex_2p_one_lock", "dict_update_2p_random_keys", "floor_mutex_2p_64_locks"];
    if !h.wants_any(&names) {
        return;
    }
    let keys: Vec<String> = (0..KEYS).map(|i| format!("k{i}")).collect();
    let dict: SharedDict<str, u64> = DictOptions::new().max_key_len(8).anonymous(2 * KEYS).expect("dict");
    assert_eq!(dict.stripes(), STRIPES);
    for k in &keys {
        dict.insert(k, 0).expect("insert");
    }
    let floor = Floor::new();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for _ in 0..ROUNDS {
        for (i, name) in names.iter().enumerate() {
            if !h.wants(name) {
                continue;
            }
            let seconds = match i {
                0 => two_processes(|_| {
                    for _ in 0..UPDATES {
                        dict.update("count", 0, |v| v + 1).expect("update");
                    }
                }),
                1 => two_processes(|_| floor.run(|_| 0)),
                2 => two_processes(|p| {
                    let mut x = seed(p);
                    for _ in 0..UPDATES {
                        let k = &keys[next(&mut x) % KEYS];
                        dict.update(k, 0, |v| v + 1).expect("update");
                    }
                }),
                _ => two_processes(|p| {
                    let mut x = seed(p);
                    floor.run(|_| next(&mut x) % KEYS)
                }),
            };
            samples[i].push(2.0 * UPDATES as f64 / seconds / 1e6);
        }
    }
    let mut result = [None; 4];
    for (i, s) in samples.iter_mut().enumerate() {
        if !s.is_empty() {
            let m = median(s);
            h.report(names[i], m, "Mops/s");
            result[i] = Some(m);
        }
    }
    h.ratio("dict_update_2p_one_key_vs_floor", result[0], result[1]);
    h.ratio("dict_update_2p_random_keys_vs_floor", result[2], result[3]);
    let total = dict.get("count").expect("get").unwrap_or(0);
    let rounds = samples[0].len() as u64;
    assert_eq!(total, rounds * 2 * UPDATES, "the one-key count is exact");
}

fn seed(p: usize) -> u64 {
    0x9E37_79B9_7F4A_7C15u64.wrapping_mul(p as u64 + 1) | 1
}

/// xorshift64*: cheap enough not to show in the figures.
fn next(x: &mut u64) -> usize {
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as usize
}

/// `STRIPES` robust mutexes and `KEYS` counters in an anonymous segment.
struct Floor {
    seg: Segment,
}

impl Floor {
    fn new() -> Self {
        let stride = std::mem::size_of::<RawMutex>().next_multiple_of(64);
        let seg = Segment::anonymous(STRIPES * stride + KEYS * 8).expect("floor segment");
        for s in 0..STRIPES {
            // SAFETY: each mutex gets its own 64-aligned, in-bounds slot of a segment nobody
            // else uses yet.
            unsafe { RawMutex::init(seg.as_ptr().add(s * stride).cast()) }.expect("init");
        }
        Floor { seg }
    }

    fn lock(&self, s: usize) -> &RawMutex {
        let stride = std::mem::size_of::<RawMutex>().next_multiple_of(64);
        // SAFETY: initialised in `new`, in bounds; a RawMutex is used through shared references.
        unsafe { &*self.seg.as_ptr().add(s * stride).cast::<RawMutex>() }
    }

    fn counter(&self, i: usize) -> *mut u64 {
        let stride = std::mem::size_of::<RawMutex>().next_multiple_of(64);
        self.seg.as_ptr().wrapping_add(STRIPES * stride + i * 8).cast()
    }

    /// `UPDATES` times: pick counter `pick()`, lock its mutex, add one, unlock.
    fn run(&self, mut pick: impl FnMut(usize) -> usize) {
        for n in 0..UPDATES as usize {
            let i = pick(n);
            let m = self.lock(i % STRIPES);
            m.lock().expect("lock");
            // SAFETY: counter `i` is in bounds and only touched under mutex `i % STRIPES`.
            unsafe { *self.counter(i) += 1 };
            // SAFETY: locked just above on this thread.
            unsafe { m.unlock() };
        }
    }
}

/// Fork two processes that run `work(0)` and `work(1)` once both are ready; seconds until
/// both have exited.
fn two_processes(work: impl Fn(usize) + Sync) -> f64 {
    let ctl = Segment::anonymous(64).expect("control segment");
    // SAFETY: the segment's first two words are ours, aligned, and only accessed atomically.
    let (ready, start) = unsafe {
        (AtomicU32::from_ptr(ctl.as_ptr().cast::<u32>()), AtomicU32::from_ptr(ctl.as_ptr().cast::<u32>().add(1)))
    };
    let pids: Vec<libc::pid_t> = (0..2)
        .map(|p| {
            fork_on(None, || {
                pin_to_cpu(p);
                ready.fetch_add(1, Ordering::AcqRel);
                while start.load(Ordering::Acquire) == 0 {
                    std::hint::spin_loop();
                }
                work(black_box(p));
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while ready.load(Ordering::Acquire) < 2 {
        assert!(Instant::now() < deadline, "bench children did not start");
        std::thread::sleep(Duration::from_micros(50));
    }
    let t = Instant::now();
    start.store(1, Ordering::Release);
    for pid in pids {
        reap_child(pid);
    }
    t.elapsed().as_secs_f64()
}

/// Run on CPU `p` (modulo the CPUs we may use), so that the two processes really run at the
/// same time instead of taking turns on one CPU.
fn pin_to_cpu(p: usize) {
    // SAFETY: `set` is a plain bitmask owned by this frame; sched_getaffinity and
    // sched_setaffinity only read and write it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return;
        }
        let allowed: Vec<usize> = (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect();
        if allowed.len() < 2 {
            return;
        }
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(allowed[p % allowed.len()], &mut one);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one);
    }
}
