//! Hostile bytes in a running pool's shared memory: a process that can open the pool's memfd
//! (here: this one, through /proc/self/fd) writes impossible values into a mailbox or an
//! entry. The pool must answer with `PoolError::Corrupt`, never call a forged address, hang
//! or crash. One test per binary: it looks for the pool's memfd among this process's fds.

mod common;

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use shmkit::Segment;
use shmkit::pool::{Pool, PoolError};

shmkit::fork_server_at_load!();

const T: Duration = Duration::from_secs(20);

// The pool's layout (src/pool/layout.rs), as a peer would learn it.
const HEADER_END: usize = 64 + 960;
const MAILBOX_LEN: usize = 256;
const MSG: usize = 1024;
const DEPTH: usize = 64;
const ENTRY_LEN: usize = 128 + 2 * MSG;
const HEAD: usize = 0;
const TAIL: usize = 64;
const ENTRY_MAC: usize = 16;

/// Map the pool's segment as a peer would: the memfd whose payload has the pool's size.
fn open_pool_segment(workers: usize) -> Segment {
    let want = HEADER_END + workers * (MAILBOX_LEN + DEPTH * ENTRY_LEN);
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let path = entry.unwrap().path();
        let is_memfd = std::fs::read_link(&path).is_ok_and(|l| l.to_string_lossy().contains("memfd:shmkit"));
        if !is_memfd {
            continue;
        }
        let Ok(file) = std::fs::OpenOptions::new().read(true).write(true).open(&path) else { continue };
        if let Ok(seg) = Segment::from_fd(OwnedFd::from(file))
            && seg.len() >= want
            && seg.len() < want + 4096
        {
            return seg;
        }
    }
    panic!("the pool's memfd was not found");
}

fn word(seg: &Segment, off: usize) -> &std::sync::atomic::AtomicU64 {
    assert!(off + 8 <= seg.len() && off.is_multiple_of(8));
    // SAFETY: in bounds and aligned (checked); any bits are a valid AtomicU64.
    unsafe { &*seg.as_ptr().add(off).cast() }
}

fn word32(seg: &Segment, off: usize) -> &std::sync::atomic::AtomicU32 {
    assert!(off + 4 <= seg.len() && off.is_multiple_of(4));
    // SAFETY: in bounds and aligned (checked); any bits are a valid AtomicU32.
    unsafe { &*seg.as_ptr().add(off).cast() }
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn expect_corrupt(r: Result<u64, PoolError>, field: &str) {
    match r {
        Err(PoolError::Corrupt { field: f, .. }) if f == field => {}
        other => panic!("expected Corrupt {{ {field} }}, got {other:?}"),
    }
}

#[test]
fn forged_mailbox_words_and_entries_give_corrupt_errors() {
    use std::sync::atomic::Ordering::SeqCst;
    let mb = HEADER_END; // worker 0's mailbox

    // A forged entry MAC: the worker refuses to run the entry.
    let pool = Pool::new(1).unwrap();
    let seg = open_pool_segment(1);
    let busy = pool.apply_async(sleep_ms, 300).unwrap(); // slot 0, running
    let victim = pool.apply_async(sleep_ms, 1).unwrap(); // slot 1, queued
    let mac = word(&seg, mb + MAILBOX_LEN + ENTRY_LEN + ENTRY_MAC);
    mac.store(mac.load(SeqCst) ^ 1, SeqCst);
    assert_eq!(busy.get_timeout(T).unwrap(), 300);
    expect_corrupt(victim.get_timeout(T), "entry.mac");
    assert_eq!(pool.apply(|x: u8| x + 1, 1).unwrap(), 2, "a refused entry does not stop the pool");
    drop((busy, victim, seg, pool)); // the handles keep the pool's memory alive too

    // A forged `tail` (more done than was ever queued): the pool stops and says so.
    let pool = Pool::new(1).unwrap();
    let seg = open_pool_segment(1);
    word32(&seg, mb + TAIL).store(1000, SeqCst);
    let start = Instant::now();
    expect_corrupt(pool.apply(sleep_ms, 1), "mailbox.tail");
    expect_corrupt(pool.apply(sleep_ms, 1), "mailbox.tail");
    assert!(start.elapsed() < Duration::from_secs(5));
    drop(seg);
    drop(pool);

    // A forged `head` (more queued than the ring holds): the worker refuses it, the manager
    // stops the pool.
    let pool = Pool::new(1).unwrap();
    let seg = open_pool_segment(1);
    word32(&seg, mb + HEAD).store(DEPTH as u32 + 1, SeqCst);
    // An idle worker looks at `head` at least every 200 ms; the pool's next call would
    // write its own `head` over the forged one.
    std::thread::sleep(Duration::from_millis(600));
    common::wait_until("the pool to notice the forged head", T, || {
        matches!(pool.apply(sleep_ms, 1), Err(PoolError::Corrupt { field: "mailbox.head", .. }))
    });
    drop(seg);
    drop(pool);
}
