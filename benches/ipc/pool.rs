//! The process pool: task throughput, one-task round trip, start-up, and a zero-copy sum
//! over a 512 MiB shared array against two raw forked processes doing the same.
//!
//! | figure                          | what is measured                                                    |
//! |---------------------------------|---------------------------------------------------------------------|
//! | `pool_map_chunksize1`           | `Pool::map_chunksize(f, 0..N, 1)` with 2 workers: tasks per second   |
//! | `pool_apply_async_rtt`          | `apply_async(f, x).get()`, one task at a time: microseconds per task |
//! | `pool_startup_2`                | `Pool::new(2)` and the first `apply` result (not the drop): ms       |
//! | `pool_sum_512mib_2w`            | `map_chunks` sum of a 512 MiB `SharedArray<f64>`, 2 workers: GB/s     |
//! | `floor_sum_512mib_2p`           | two forked processes, already running, sum halves of a raw `MAP_SHARED` mapping: GB/s |
//! | `pool_sum_worker_private_mib`   | the largest worker's Private_Clean + Private_Dirty after the sum (smaps_rollup) |
//!
//! The benchmark binary is single-threaded, so pools start with `StartMethod::Fork`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmkit::SharedArray;
use shmkit::pool::Pool;

use crate::util::{Harness, SharedPage, median};

const SUM_ELEMS: usize = 64 << 20; // 512 MiB of f64

pub fn run(h: &mut Harness) {
    h.group("pool");
    if h.wants("pool_map_chunksize1") {
        map_chunksize1(h);
    }
    if h.wants("pool_apply_async_rtt") {
        rtt(h);
    }
    if h.wants("pool_startup_2") {
        startup(h);
    }
    if h.wants_any(&["pool_sum_512mib_2w", "floor_sum_512mib_2p", "pool_sum_worker_private_mib"]) {
        sum(h);
    }
}

fn inc(x: u64) -> u64 {
    x + 1
}

fn map_chunksize1(h: &Harness) {
    const N: u64 = 200_000;
    let pool = Pool::new(2).expect("pool");
    let mut rates = Vec::new();
    let _ = pool.map_chunksize(inc, 0..N / 4, 1).expect("warm-up");
    for _ in 0..7 {
        let start = Instant::now();
        let out = pool.map_chunksize(inc, 0..N, 1).expect("map");
        let t = start.elapsed();
        assert_eq!(out.len() as u64, N);
        rates.push(N as f64 / t.as_secs_f64());
    }
    h.report("pool_map_chunksize1", median(&mut rates), "tasks/s");
}

fn rtt(h: &Harness) {
    const ITERS: u64 = 2000;
    let pool = Pool::new(2).expect("pool");
    let mut per = Vec::new();
    for round in 0..12 {
        let start = Instant::now();
        for i in 0..ITERS {
            black_box(pool.apply_async(inc, i).expect("submit").get().expect("result"));
        }
        if round > 0 {
            per.push(start.elapsed().as_secs_f64() * 1e6 / ITERS as f64);
        }
    }
    h.report("pool_apply_async_rtt", median(&mut per), "us");
}

fn startup(h: &Harness) {
    let mut ms = Vec::new();
    for round in 0..16 {
        let start = Instant::now();
        let pool = Pool::new(2).expect("pool");
        black_box(pool.apply(inc, 1).expect("first result"));
        let t = start.elapsed();
        drop(pool);
        if round > 0 {
            ms.push(t.as_secs_f64() * 1e3);
        }
    }
    h.report("pool_startup_2", median(&mut ms), "ms");
}

/// Sum with eight independent accumulators (as numpy's pairwise sum does), so the loop is
/// bound by memory bandwidth, not by the latency of one chain of dependent additions. Ours
/// and the floor use this same kernel.
fn sum_slice(x: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f64>() + chunks.remainder().iter().sum::<f64>()
}

fn chunk_sum(_: usize, c: &[f64]) -> f64 {
    sum_slice(c)
}

fn private_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let kib: u64 = s
        .lines()
        .filter(|l| l.starts_with("Private_Clean:") || l.starts_with("Private_Dirty:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    kib as f64 / 1024.0
}

fn sum(h: &Harness) {
    const ROUNDS: usize = 9;
    let bytes = (SUM_ELEMS * 8) as f64;
    let pool = Pool::new(2).expect("pool");
    let a = SharedArray::<f64>::create(None, SUM_ELEMS).expect("512 MiB array");
    a.write().expect("fill").iter_mut().enumerate().for_each(|(i, x)| *x = (i % 1000) as f64);
    let expect = sum_slice(&a.read().expect("read"));
    let floor = Floor::start(SUM_ELEMS);
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for round in 0..=ROUNDS {
        let start = Instant::now();
        let parts = pool.map_chunks(&a, SUM_ELEMS / 2, chunk_sum).expect("map_chunks");
        let t = start.elapsed();
        assert_eq!(parts.len(), 2);
        black_box(parts[0] + parts[1]);
        let t_floor = floor.round();
        if round > 0 {
            ours.push(bytes / t.as_secs_f64() / 1e9);
            raw.push(bytes / t_floor.as_secs_f64() / 1e9);
        }
    }
    let check = pool.map_chunks(&a, SUM_ELEMS / 2, chunk_sum).expect("map_chunks");
    assert_eq!(check[0] + check[1], expect, "halves summed differently from the whole? (same order per half)");
    let ours = median(&mut ours);
    let raw = median(&mut raw);
    h.report("pool_sum_512mib_2w", ours, "GB/s");
    h.report("floor_sum_512mib_2p", raw, "GB/s");
    h.ratio("pool_sum_512mib_2w_vs_floor", Some(ours), Some(raw));
    let private = pool.worker_pids().into_iter().map(private_mib).fold(0.0, f64::max);
    h.report("pool_sum_worker_private_mib", private, "MiB");
    drop(floor);
}

/// The floor: a raw `MAP_SHARED` anonymous mapping and two forked processes that sum their
/// halves whenever the parent bumps a generation word (futex), and report back the same way.
struct Floor {
    page: SharedPage,
    pids: [libc::pid_t; 2],
}

#[repr(C)]
struct Ctl {
    generation: AtomicU32,
    done: AtomicU32,
    results: [AtomicU64; 2],
}

fn futex(word: &AtomicU32, op: libc::c_int, val: u32) {
    // SAFETY: `word` is a live, aligned u32 in a shared mapping; no timeout.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), op, val, std::ptr::null::<libc::timespec>(), 0, 0) };
}

impl Floor {
    fn start(elems: usize) -> Floor {
        let page = SharedPage::new(4096 + elems * 8);
        let map = page.ptr();
        // SAFETY: the data area is `elems` f64s after the first page, ours alone until the fork.
        let data = unsafe { std::slice::from_raw_parts_mut(map.add(4096).cast::<f64>(), elems) };
        data.iter_mut().enumerate().for_each(|(i, x)| *x = (i % 1000) as f64);
        let mut pids = [0; 2];
        for (k, pid) in pids.iter_mut().enumerate() {
            // SAFETY: the benchmark process is single-threaded; the child only reads the
            // mapping, uses futexes and `_exit`s.
            let p = unsafe { libc::fork() };
            assert!(p >= 0, "fork");
            if p == 0 {
                // SAFETY: die with the benchmark; plain prctl.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) };
                floor_child(map, elems, k);
            }
            *pid = p;
        }
        Floor { page, pids }
    }

    fn ctl(&self) -> &Ctl {
        // SAFETY: the first page of the live mapping holds the control words (atomics).
        unsafe { &*self.page.ptr().cast::<Ctl>() }
    }

    /// One round: both children sum their halves; returns the wall time.
    fn round(&self) -> Duration {
        let c = self.ctl();
        c.done.store(0, Ordering::SeqCst);
        let start = Instant::now();
        c.generation.fetch_add(1, Ordering::SeqCst);
        futex(&c.generation, libc::FUTEX_WAKE, i32::MAX as u32);
        loop {
            let d = c.done.load(Ordering::SeqCst);
            if d == 2 {
                break;
            }
            futex(&c.done, libc::FUTEX_WAIT, d);
        }
        start.elapsed()
    }
}

fn floor_child(map: *mut u8, elems: usize, k: usize) -> ! {
    // SAFETY: the mapping lives as long as this process; the control page holds atomics; the
    // data half is only read (the parent does not write it after the fork).
    let (c, data) = unsafe {
        (&*map.cast::<Ctl>(), std::slice::from_raw_parts(map.add(4096).cast::<f64>().add(k * elems / 2), elems / 2))
    };
    let mut seen = 0;
    loop {
        let g = c.generation.load(Ordering::SeqCst);
        if g == seen {
            futex(&c.generation, libc::FUTEX_WAIT, g);
            continue;
        }
        seen = g;
        let s = sum_slice(data);
        c.results[k].store(s.to_bits(), Ordering::SeqCst);
        c.done.fetch_add(1, Ordering::SeqCst);
        futex(&c.done, libc::FUTEX_WAKE, 1);
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        for &p in &self.pids {
            // SAFETY: our own unreaped children.
            unsafe {
                libc::kill(p, libc::SIGKILL);
                libc::waitpid(p, std::ptr::null_mut(), 0);
            }
        }
        // `page` unmaps after the children are gone.
    }
}
