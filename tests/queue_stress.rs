//! Multi-process stress: several producer and consumer processes on one named queue, one
//! producer an unrelated (re-executed) process that opens the queue by name. Every message
//! carries a checksum and is counted in a shared array; each must arrive exactly once.
//! A second test SIGKILLs processes at random moments: nothing may hang, nothing may be
//! delivered twice, and only messages counted as abandoned may go missing.

mod common;

use std::time::{Duration, Instant};

use common::{Exit, fork_child, kill, role, serial, spawn_role, wait_child, wait_pid};
use shmkit::channel::{GetError, Queue};
use shmkit::{Element, SharedArray};

const PRODUCERS: u32 = 3;
const CONSUMERS: u32 = 3;
const PER_PRODUCER: u32 = 20_000;
const LIMIT: Duration = Duration::from_secs(60);

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Msg {
    producer: u32,
    seq: u32,
    payload: [u64; 5],
    checksum: u64,
}

impl Element for Msg {
    const TYPE_NAME: &'static str = "queue_stress::Msg";
}

fn checksum(producer: u32, seq: u32, payload: &[u64; 5]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ (u64::from(producer) << 32 | u64::from(seq));
    for w in payload {
        h = (h ^ w).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn msg(producer: u32, seq: u32) -> Msg {
    let base = u64::from(producer) << 40 | u64::from(seq);
    let payload = [base, !base, base.rotate_left(7), base.wrapping_mul(3), seq as u64];
    Msg { producer, seq, payload, checksum: checksum(producer, seq, &payload) }
}

fn produce(q: &Queue<Msg>, producer: u32) -> i32 {
    for seq in 0..PER_PRODUCER {
        if q.put_timeout(msg(producer, seq), LIMIT).is_err() {
            return 2;
        }
    }
    0
}

/// Take messages until the queue is closed and drained; count each in `seen`.
fn consume(q: &Queue<Msg>, seen: &SharedArray<u32>) -> i32 {
    let Ok(counts) = seen.atomics(..) else { return 4 };
    loop {
        match q.get_timeout(LIMIT) {
            Ok(m) => {
                if m.checksum != checksum(m.producer, m.seq, &m.payload) || m.producer > PRODUCERS {
                    return 5;
                }
                let i = (m.producer * PER_PRODUCER + m.seq) as usize;
                let Some(c) = counts.get(i) else { return 6 };
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(GetError::Closed) => return 0,
            Err(_) => return 7,
        }
    }
}

/// The re-executed producer: opens the queue by name (an unrelated process).
#[test]
#[ignore = "child role of stress_named_queue_exactly_once"]
fn stress_child_producer() {
    if role().as_deref() != Some("producer") {
        return;
    }
    let name = std::env::var("QUEUE_NAME").expect("QUEUE_NAME");
    let q = Queue::<Msg>::open(&name).expect("open the queue by name");
    std::process::exit(produce(&q, PRODUCERS));
}

#[test]
fn stress_named_queue_exactly_once() {
    let _s = serial();
    let q = Queue::<Msg>::create(None, 16).unwrap();
    let total = (PRODUCERS + 1) * PER_PRODUCER;
    let seen = SharedArray::<u32>::anonymous(total as usize).unwrap();
    let start = Instant::now();
    let consumers: Vec<_> = (0..CONSUMERS).map(|_| fork_child(|| consume(&q, &seen))).collect();
    let producers: Vec<_> = (0..PRODUCERS).map(|p| fork_child(|| produce(&q, p))).collect();
    let mut remote = spawn_role("stress_child_producer", "producer", &[("QUEUE_NAME", q.name().unwrap())]);
    for p in producers {
        assert_eq!(wait_pid(p, LIMIT), Exit::Code(0), "a producer failed");
    }
    assert_eq!(wait_child(&mut remote, LIMIT), Exit::Code(0), "the re-executed producer failed");
    q.close();
    for c in consumers {
        assert_eq!(wait_pid(c, LIMIT), Exit::Code(0), "a consumer failed (checksum or counting)");
    }
    let counts = seen.copy_to_vec().unwrap();
    let wrong: Vec<_> = counts.iter().enumerate().filter(|(_, c)| **c != 1).take(5).collect();
    assert!(wrong.is_empty(), "messages not delivered exactly once (index, count): {wrong:?}");
    assert_eq!(q.abandoned(), 0);
    eprintln!("{total} messages through {} processes in {:?}", PRODUCERS + 1 + CONSUMERS, start.elapsed());
}

#[test]
fn stress_with_random_kills() {
    let _s = serial();
    let q = Queue::<Msg>::anonymous(8).unwrap();
    let total = PRODUCERS * PER_PRODUCER;
    let seen = SharedArray::<u32>::anonymous(total as usize).unwrap();
    // Two extra consumers and one extra producer get killed at random moments.
    let victims_c: Vec<_> = (0..2).map(|_| fork_child(|| consume(&q, &seen))).collect();
    let consumers: Vec<_> = (0..CONSUMERS).map(|_| fork_child(|| consume(&q, &seen))).collect();
    let victim_p = fork_child(|| produce(&q, PRODUCERS - 1));
    let producers: Vec<_> = (0..PRODUCERS - 1).map(|p| fork_child(|| produce(&q, p))).collect();
    let mut rng = std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for pid in victims_c.iter().copied().chain([victim_p]) {
        std::thread::sleep(Duration::from_micros(next() % 20_000));
        kill(pid, libc::SIGKILL);
        // The victim producer may have finished its messages before the kill came.
        let end = wait_pid(pid, LIMIT);
        assert!(matches!(end, Exit::Signal(libc::SIGKILL) | Exit::Code(0)), "victim {pid} ended with {end:?}");
    }
    for p in producers {
        assert_eq!(wait_pid(p, LIMIT), Exit::Code(0), "a surviving producer failed");
    }
    q.close();
    for c in consumers {
        assert_eq!(wait_pid(c, LIMIT), Exit::Code(0), "a surviving consumer failed");
    }
    let counts = seen.copy_to_vec().unwrap();
    assert!(counts.iter().all(|&c| c <= 1), "a message was delivered twice");
    // The surviving producers' messages: all delivered, except those lost with a killed
    // process (taken by a killed consumer, or in a slot abandoned mid-operation).
    let survivors = ((PRODUCERS - 1) * PER_PRODUCER) as usize;
    let missing = counts[..survivors].iter().filter(|&&c| c == 0).count();
    eprintln!("killed 3 processes; {missing} surviving messages missing, {} slots abandoned", q.abandoned());
    // A killed consumer loses at most the messages it took but had not counted yet (one)
    // plus one abandoned slot each.
    assert!(missing <= 2 * 2, "{missing} messages of surviving producers went missing");
}
