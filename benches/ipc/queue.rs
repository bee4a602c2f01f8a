//! Queues and pipes between two processes, against the raw floors measured in the same run.
//!
//! | figure                       | what is measured                                                          |
//! |------------------------------|---------------------------------------------------------------------------|
//! | `queue_8b_1to1`              | `Queue<u64>` (1024 slots), this process puts, a forked one gets: million messages/s |
//! | `queue_1mib_1to1`            | `ByteQueue` (8 × 1 MiB slots), 1 MiB `put`, the consumer `get_into` a reused buffer: GB/s |
//! | `floor_memcpy_1mib`          | one thread copying 1 MiB buffers (`copy_from_slice`): GB/s                 |
//! | `pipe_rtt`                   | `Pipe` round trip of 8 bytes to an echoing forked process, both ends parked (spin 0): µs |
//! | `floor_futex_pingpong_rtt`   | two processes ping-pong a word in a `MAP_SHARED` page with `FUTEX_WAIT`/`FUTEX_WAKE`: µs |
//! | `pipe_rtt_spin`              | `pipe_rtt` with spin-then-park (50 µs of spinning before parking): µs      |
//!
//! The benchmark binary is single-threaded, so it forks its peers directly. While this
//! group runs, this process is pinned to CPU 0 and its peers to CPU 1 (when the machine has
//! two), so the two really run at the same time; the previous affinity is restored after.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shmkit::channel::{ByteQueue, Pipe, PipeEnd, Queue};

use crate::util::{Harness, median};

const MIB: usize = 1 << 20;

pub fn run(h: &mut Harness) {
    h.group("queue");
    let saved = affinity();
    pin(0);
    if h.wants("queue_8b_1to1") {
        small(h);
    }
    let big = h.wants_any(&["queue_1mib_1to1", "floor_memcpy_1mib"]);
    if big {
        large(h);
    }
    if h.wants_any(&["pipe_rtt", "floor_futex_pingpong_rtt", "pipe_rtt_spin"]) {
        rtt(h);
    }
    if let Some(set) = saved {
        // SAFETY: restores the mask read by `affinity` for this process.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    }
}

/// This process's CPU mask, if it can be read.
fn affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is a plain bitmask; all zeroes is valid, and the call only writes it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size given.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    (r == 0).then_some(set)
}

/// Pin the calling process to `cpu` if the machine has more than one CPU it may use.
fn pin(cpu: usize) {
    let Some(current) = affinity() else { return };
    // SAFETY: CPU_COUNT only reads the mask.
    if unsafe { libc::CPU_COUNT(&current) } < 2 {
        return;
    }
    // SAFETY: as in `affinity`; CPU_SET writes one bit of our own mask; the call reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Fork a child that runs `f` and exits.
fn fork(f: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the benchmark is single-threaded; the child runs `f` and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        pin(1);
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_ok();
        // SAFETY: leave without running the parent's destructors or atexit handlers.
        unsafe { libc::_exit(if ok { 0 } else { 101 }) };
    }
    pid
}

fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waitpid on our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "bench child failed: {status:#x}");
}

fn small(h: &Harness) {
    const N: u64 = 2_000_000;
    const ROUNDS: usize = 7;
    let q = Queue::<u64>::anonymous(1024).expect("queue");
    let done = Queue::<u64>::anonymous(1).expect("done queue");
    let child = fork(|| {
        let mut expect = 0u64;
        while let Ok(v) = q.get() {
            assert_eq!(v, expect, "message out of order");
            expect += 1;
            if expect.is_multiple_of(N) {
                done.put(expect).expect("ack");
            }
        }
    });
    let mut rates = Vec::new();
    let mut next = 0u64;
    for round in 0..=ROUNDS {
        let start = Instant::now();
        for _ in 0..N {
            q.put(next).expect("put");
            next += 1;
        }
        assert_eq!(done.get(), Ok(next));
        if round > 0 {
            rates.push(N as f64 / start.elapsed().as_secs_f64() / 1e6);
        }
    }
    q.close();
    reap(child);
    h.report("queue_8b_1to1", median(&mut rates), "Mmsg/s");
}

fn large(h: &Harness) {
    const N: usize = 512;
    const ROUNDS: usize = 5;
    let q = ByteQueue::anonymous(8, MIB).expect("byte queue");
    let done = Queue::<u64>::anonymous(1).expect("done queue");
    let child = fork(|| {
        let mut buf = Vec::with_capacity(MIB);
        let mut n = 0u64;
        let mut sum = 0u64;
        while let Ok(len) = q.get_into(&mut buf) {
            sum = sum.wrapping_add(u64::from(buf[len - 1]));
            n += 1;
            if n.is_multiple_of(N as u64) {
                done.put(sum).expect("ack");
            }
        }
    });
    let msg: Vec<u8> = (0..MIB).map(|i| i as u8).collect();
    let mut rates = Vec::new();
    for round in 0..=ROUNDS {
        let start = Instant::now();
        for _ in 0..N {
            q.put(&msg).expect("put");
        }
        done.get().expect("ack");
        if round > 0 {
            rates.push((N * MIB) as f64 / start.elapsed().as_secs_f64() / 1e9);
        }
    }
    q.close();
    reap(child);
    let queue = median(&mut rates);

    let src: Vec<u8> = (0..MIB).map(|i| (i * 7) as u8).collect();
    let mut dst = vec![0u8; MIB];
    let mut floor = Vec::new();
    for _ in 0..=ROUNDS {
        let start = Instant::now();
        for _ in 0..N {
            dst.copy_from_slice(std::hint::black_box(&src));
            std::hint::black_box(&mut dst);
        }
        floor.push((N * MIB) as f64 / start.elapsed().as_secs_f64() / 1e9);
    }
    floor.remove(0);
    let floor = median(&mut floor);
    if h.wants("queue_1mib_1to1") {
        h.report("queue_1mib_1to1", queue, "GB/s");
    }
    if h.wants("floor_memcpy_1mib") {
        h.report("floor_memcpy_1mib", floor, "GB/s");
    }
    h.ratio("queue_1mib_1to1_vs_floor", Some(queue), Some(floor));
}

fn rtt(h: &Harness) {
    const ITERS: usize = 2000;
    const ROUNDS: usize = 15;
    let mut parked = pipe_bench(Duration::ZERO, ITERS, ROUNDS);
    let floor = futex_bench(ITERS, ROUNDS);
    let mut spin = pipe_bench(Duration::from_micros(50), ITERS, ROUNDS);
    let (p, f, s) = (median(&mut parked), floor, median(&mut spin));
    if h.wants("pipe_rtt") {
        h.report("pipe_rtt", p, "us");
    }
    if h.wants("floor_futex_pingpong_rtt") {
        h.report("floor_futex_pingpong_rtt", f, "us");
    }
    if h.wants("pipe_rtt_spin") {
        h.report("pipe_rtt_spin", s, "us");
    }
    h.ratio("pipe_rtt_vs_floor", Some(p), Some(f));
}

/// Round trips through a pipe to an echoing child: µs per round trip, one sample per round.
fn pipe_bench(spin: Duration, iters: usize, rounds: usize) -> Vec<f64> {
    let (mut a, mut b) = Pipe::anonymous(4, 64).expect("pipe");
    a.set_spin(spin);
    b.set_spin(spin);
    // The child keeps its (unused) copy of `a`, so it is stopped by an empty message.
    let child = fork(|| echo(&b));
    drop(b);
    let msg = [7u8; 8];
    let mut buf = Vec::with_capacity(64);
    let mut samples = Vec::new();
    for round in 0..=rounds {
        let start = Instant::now();
        for _ in 0..iters {
            a.send(&msg).expect("send");
            a.recv_into(&mut buf).expect("recv");
        }
        if round > 0 {
            samples.push(start.elapsed().as_secs_f64() * 1e6 / iters as f64);
        }
    }
    a.send(b"").expect("stop the echo");
    reap(child);
    samples
}

fn echo(b: &PipeEnd) {
    let mut buf = Vec::with_capacity(64);
    while b.recv_into(&mut buf).is_ok_and(|n| n > 0) {
        if b.send(&buf).is_err() {
            break;
        }
    }
}

fn futex(word: &AtomicU32, op: libc::c_int, val: u32) {
    // SAFETY: `word` is an aligned 32-bit word in a MAP_SHARED mapping that outlives the
    // call; FUTEX_WAIT/FUTEX_WAKE (shared, not private) only use its address and value.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), op, val, std::ptr::null::<libc::timespec>(), 0usize, 0u32) };
}

/// The floor: a raw futex ping-pong between two processes (median µs per round trip).
fn futex_bench(iters: usize, rounds: usize) -> f64 {
    // SAFETY: a fresh anonymous shared mapping of one page; unmapped below.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(page, libc::MAP_FAILED, "mmap");
    // SAFETY: the page is zeroed, aligned and lives until the munmap below (after the
    // child is reaped); AtomicU32 is valid for any bits.
    let word = unsafe { &*page.cast::<AtomicU32>() };
    const PING: u32 = 1;
    const PONG: u32 = 2;
    const STOP: u32 = 3;
    let wait_for = |want: u32| loop {
        let v = word.load(Ordering::Acquire);
        if v == want || v == STOP {
            return v;
        }
        futex(word, libc::FUTEX_WAIT, v);
    };
    let child = fork(|| {
        while wait_for(PING) == PING {
            word.store(PONG, Ordering::Release);
            futex(word, libc::FUTEX_WAKE, 1);
        }
    });
    let mut samples = Vec::new();
    for round in 0..=rounds {
        let start = Instant::now();
        for _ in 0..iters {
            word.store(PING, Ordering::Release);
            futex(word, libc::FUTEX_WAKE, 1);
            wait_for(PONG);
        }
        if round > 0 {
            samples.push(start.elapsed().as_secs_f64() * 1e6 / iters as f64);
        }
    }
    word.store(STOP, Ordering::Release);
    futex(word, libc::FUTEX_WAKE, 1);
    reap(child);
    // SAFETY: the child is gone; nothing refers to the page any more.
    unsafe { libc::munmap(page, 4096) };
    median(&mut samples)
}
