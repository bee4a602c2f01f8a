//! Queues and pipes between two processes, against the raw floors measured in the same run.
//!
//! | figure                       | what is measured                                                          |
//! |------------------------------|---------------------------------------------------------------------------|
//! | `queue_8b_1to1`              | `Queue<u64>` (1024 slots), this process puts, a forked one gets: million messages/s |
//! | `queue_1mib_1to1`            | `ByteQueue` (8 × 1 MiB slots), 1 MiB `put`, the consumer `get_into` a reused buffer: GB/s |
//! | `floor_memcpy_1mib`          | one thread copying 1 MiB buffers (`copy_from_slice`): GB/s                 |
//! | `pipe_rtt`                   | `Pipe` round trip of 8 bytes to an echoing forked process, both ends parked (`WaitPolicy::Park`): µs |
//! | `floor_futex_pingpong_rtt_beside_pipe` | two processes ping-pong a word in a `MAP_SHARED` page with `FUTEX_WAIT`/`FUTEX_WAKE`, rounds interleaved with `pipe_rtt`'s: µs |
//! | `pipe_rtt_default`           | `pipe_rtt` with the default wait policy (adaptive spin, then park): µs     |
//!
//! The benchmark binary is single-threaded, so it forks its peers directly. While this
//! group runs, this process is pinned to CPU 0 and its peers to CPU 1 (when the machine has
//! two), so the two really run at the same time; the previous affinity is restored after.

use std::time::{Duration, Instant};

use shmkit::channel::{ByteQueue, Pipe, PipeEnd, Queue};
use shmkit::sync::WaitPolicy;

use crate::util::{FutexPingPong, Harness, affinity, fork_child, median, pin, reap_child, set_affinity};

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
    if h.wants_any(&["pipe_rtt", "floor_futex_pingpong_rtt_beside_pipe", "pipe_rtt_default"]) {
        rtt(h);
    }
    if let Some(set) = saved {
        set_affinity(&set);
    }
}

fn small(h: &Harness) {
    const N: u64 = 2_000_000;
    const ROUNDS: usize = 7;
    let q = Queue::<u64>::anonymous(1024).expect("queue");
    let done = Queue::<u64>::anonymous(1).expect("done queue");
    let child = fork_child(|| {
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
    reap_child(child);
    h.report("queue_8b_1to1", median(&mut rates), "Mmsg/s");
}

fn large(h: &Harness) {
    const N: usize = 512;
    const ROUNDS: usize = 5;
    let q = ByteQueue::anonymous(8, MIB).expect("byte queue");
    let done = Queue::<u64>::anonymous(1).expect("done queue");
    let child = fork_child(|| {
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
    reap_child(child);
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
    // Parked pipe and the futex floor interleaved round by round, so both see the same
    // wake-up latency drift (the floor is printed again under its own name for this run).
    let (floor, parked) = (FutexPingPong::new(), PipePingPong::new(WaitPolicy::Park));
    let r = h.interleaved(
        ROUNDS,
        ITERS,
        "us",
        &mut [
            ("floor_futex_pingpong_rtt_beside_pipe", &mut |n| floor.round(n)),
            ("pipe_rtt", &mut |n| parked.round(n)),
        ],
    );
    drop((floor, parked));
    if h.wants("pipe_rtt_default") {
        let default = PipePingPong::new(WaitPolicy::process_default());
        h.interleaved(ROUNDS, ITERS * 5, "us", &mut [("pipe_rtt_default", &mut |n| default.round(n))]);
    }
    h.ratio("pipe_rtt_vs_floor", r[1], r[0]);
}

/// Round trips through a pipe to an echoing child, which lives as long as the value.
struct PipePingPong {
    a: PipeEnd,
    child: libc::pid_t,
}

impl PipePingPong {
    fn new(policy: WaitPolicy) -> Self {
        let (mut a, mut b) = Pipe::anonymous(4, 64).expect("pipe");
        a.set_wait_policy(policy);
        b.set_wait_policy(policy);
        // The child keeps its (unused) copy of `a`, so it is stopped by an empty message.
        let child = fork_child(|| echo(&b));
        drop(b);
        PipePingPong { a, child }
    }

    /// `iters` round trips of an 8-byte message; the elapsed time.
    fn round(&self, iters: usize) -> Duration {
        let msg = [7u8; 8];
        let mut buf = Vec::with_capacity(64);
        let start = Instant::now();
        for _ in 0..iters {
            self.a.send(&msg).expect("send");
            self.a.recv_into(&mut buf).expect("recv");
        }
        start.elapsed()
    }
}

impl Drop for PipePingPong {
    fn drop(&mut self) {
        self.a.send(b"").expect("stop the echo");
        reap_child(self.child);
    }
}

fn echo(b: &PipeEnd) {
    let mut buf = Vec::with_capacity(64);
    while b.recv_into(&mut buf).is_ok_and(|n| n > 0) {
        if b.send(&buf).is_err() {
            break;
        }
    }
}
