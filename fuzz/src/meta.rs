//! The checks of the `queue_meta`, `dict_meta` and `list_meta` fuzz targets, shared with
//! `tests/fuzz_corpus_meta.rs` (which includes this file with `#[path]`).
//!
//! Input: byte 0 holds flags (bit 0: recompute the record's check word after the overwrite,
//! so that the field checks behind it are fuzzed too; bit 1: a byte queue instead of a
//! `Queue<u64>`); the rest overwrite the start of a real segment's control block (the fixed
//! record and the live words after it, never a mutex). Then `open` must give a typed error,
//! or a handle whose operations return errors or in-bounds results: never a panic, a fault
//! or a hang.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shmkit::SegmentOptions;
use shmkit::channel::{ByteQueue, Queue};
use shmkit::manager::{DictOptions, SharedDict, SharedList};

/// Start of the control block.
const CTL: u64 = 128;
const SHORT: Duration = Duration::from_millis(1);

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("/fuzz-shmkit-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn quick() -> SegmentOptions {
    SegmentOptions::new().open_timeout(Duration::ZERO)
}

/// Overwrite control-block bytes `0..limit` of segment `name` with `bytes`; with `fix`,
/// recompute the check word at `check` over the record bytes `0..record` (with the check
/// word zeroed when it lies inside them).
fn overwrite(name: &str, bytes: &[u8], limit: usize, fix: Option<(usize, usize)>) {
    let f = OpenOptions::new().read(true).write(true).open(format!("/dev/shm{name}")).expect("segment file");
    let bytes = &bytes[..bytes.len().min(limit)];
    f.write_all_at(bytes, CTL).expect("overwrite");
    if let Some((record, check)) = fix {
        let mut rec = vec![0u8; record];
        f.read_exact_at(&mut rec, CTL).expect("read record");
        if let Some(word) = rec.get_mut(check..check + 8) {
            word.fill(0);
        }
        f.write_all_at(&fnv1a(&rec).to_ne_bytes(), CTL + check as u64).expect("write check");
    }
}

fn split(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&flags, rest)) => (flags, rest),
        None => (0, &[]),
    }
}

/// Target `queue_meta`: the ring's fixed words (format, flags, capacity, stride, max_msg,
/// data_offset, abandoned, check) and live words (head, tail, waiters), 320 bytes.
pub fn check_queue_meta(data: &[u8]) {
    let (flags, bytes) = split(data);
    // The ring's check word covers its first 40 bytes (format to data_offset).
    let fix = (flags & 1 != 0).then_some((40, 48));
    if flags & 2 == 0 {
        let q = Queue::<u64>::create(Some(&unique("q")), 4).expect("create");
        q.put(1).expect("put");
        overwrite(q.name().expect("named"), bytes, 320, fix);
        if let Ok(p) = Queue::<u64>::open_with(&quick(), q.name().expect("named")) {
            let _ = (p.try_put(2), p.try_get(), p.put_timeout(3, SHORT), p.get_timeout(SHORT));
            assert!(p.len() <= p.capacity());
        }
    } else {
        let q = ByteQueue::create(Some(&unique("b")), 4, 40).expect("create");
        q.put(b"abc").expect("put");
        overwrite(q.name().expect("named"), bytes, 320, fix);
        if let Ok(p) = ByteQueue::open_with(&quick(), q.name().expect("named")) {
            if let Ok(m) = p.try_get() {
                assert!(m.len() <= p.max_message());
            }
            let _ = (p.try_put(b"x"), p.put_timeout(&[0; 40], SHORT), p.get_timeout(SHORT));
        }
    }
}

/// Target `dict_meta`: the dict's record (128 bytes) and live counters (64 bytes).
pub fn check_dict_meta(data: &[u8]) {
    let (flags, bytes) = split(data);
    let fix = (flags & 1 != 0).then_some((128, 104));
    let stripes = u32::from(flags >> 2 & 3) + 1;
    let d: SharedDict<str, u64> = DictOptions::new().stripes(stripes).create(Some(&unique("d")), 16).expect("create");
    d.insert("k", 1).expect("insert");
    overwrite(d.name().expect("named"), bytes, 192, fix);
    let opts = DictOptions::new().segment(quick()).timeout(Some(SHORT));
    if let Ok(p) = opts.open::<str, u64>(d.name().expect("named")) {
        let _ = (p.get("k"), p.insert("j", 2), p.update("k", 0, |v| v + 1), p.remove("j"), p.len());
        if let Ok(all) = p.snapshot() {
            assert!(all.len() <= p.capacity());
        }
    }
}

/// Target `list_meta`: the list's record (64 bytes).
pub fn check_list_meta(data: &[u8]) {
    let (flags, bytes) = split(data);
    let fix = (flags & 1 != 0).then_some((64, 24));
    let l = SharedList::<u64>::create(Some(&unique("l")), 8).expect("create");
    l.push(1).expect("push");
    overwrite(l.name().expect("named"), bytes, 64, fix);
    if let Ok(mut p) = SharedList::<u64>::open(l.name().expect("named")) {
        p.set_timeout(Some(SHORT));
        let _ = (p.push(2), p.get(0), p.set(0, 3), p.pop(), p.len());
        if let Ok(all) = p.snapshot() {
            assert!(all.len() <= p.capacity());
        }
    }
}
