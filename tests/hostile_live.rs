//! Hostile bytes after open: a peer rewrites a word that is read on every operation (ring
//! positions and stamps, a message's length word, a dict's counts, chains and journal, a
//! list's length and journal, the fixed records themselves) while another process holds the
//! object open. Every operation must then return a typed error or a wrong-but-in-bounds
//! result, promptly: never panic, hang or touch memory outside the segment.

mod common;
#[path = "common/hostile_bytes.rs"]
mod hostile;

use std::fs::{File, OpenOptions};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use common::unique_name;
use hostile::{CTL, RING_HEADER, SLOT_META, hostile_values, path, read_word, write_word};
use shmkit::channel::{ByteQueue, Pipe, Queue};
use shmkit::manager::{DictOptions, SharedDict, SharedList};
use shmkit::segment::header::HEADER_SIZE;

const SHORT: Duration = Duration::from_millis(20);
/// Every batch of operations must end well within this.
const BOUND: Duration = Duration::from_secs(2);

/// For each `(name, offset, width)` and each hostile value: `make` a fresh object (returning
/// the handle to scribble under and its segment name), write the value through the file,
/// then run `ops` on the handle.
fn scribble_then_operate<H>(
    label: &str,
    fields: &[(&str, usize, usize)],
    make: impl Fn() -> (H, String),
    ops: impl Fn(&H),
) {
    for &(name, at, width) in fields {
        let (probe, seg) = make();
        let orig = read_word(&file(&seg), at, width);
        drop(probe);
        for v in hostile_values(orig, width) {
            let (h, seg) = make();
            write_word(&file(&seg), at, width, v);
            let start = Instant::now();
            let r = catch_unwind(AssertUnwindSafe(|| ops(&h)));
            assert!(r.is_ok(), "{label}: operations panicked with {name} = {v:#x}");
            assert!(start.elapsed() < BOUND, "{label}: operations with {name} = {v:#x} took {:?}", start.elapsed());
        }
    }
}

fn file(name: &str) -> File {
    OpenOptions::new().read(true).write(true).open(path(name)).expect("open the segment file")
}

fn ring_live_fields(ring: usize, cap: usize) -> Vec<(&'static str, usize, usize)> {
    let at = CTL + ring;
    let mut v = vec![
        ("capacity", at + 8, 8),
        ("stride", at + 16, 8),
        ("max_msg", at + 24, 8),
        ("data_offset", at + 32, 8),
        ("abandoned", at + 40, 8),
        ("head", at + 64, 8),
        ("tail", at + 128, 8),
        ("consumers.seq", at + 192, 4),
        ("consumers.count", at + 196, 4),
        ("producers.seq", at + 256, 4),
        ("producers.count", at + 260, 4),
    ];
    let names = ["slot0.stamp", "slot1.stamp", "slot2.stamp", "slot3.stamp"];
    for (i, n) in names.iter().enumerate().take(cap) {
        v.push((n, at + RING_HEADER + i * SLOT_META, 8));
    }
    v
}

#[test]
fn queue_words_rewritten_after_open() {
    let make = || {
        let q = Queue::<u64>::create(Some(&unique_name("live-queue")), 4).unwrap();
        q.put(1).unwrap();
        q.put(2).unwrap();
        let _ = q.get();
        let name = q.name().unwrap().to_owned();
        let peer = Queue::<u64>::open(&name).unwrap();
        ((q, peer), name)
    };
    scribble_then_operate("queue", &ring_live_fields(0, 4), make, |(_, q)| {
        let _ = q.try_put(7);
        let _ = q.try_get();
        let _ = q.put_timeout(8, SHORT);
        let _ = q.get_timeout(SHORT);
        let _ = (q.len(), q.is_empty(), q.is_closed(), q.abandoned());
        assert!(q.len() <= q.capacity());
        q.close();
        let _ = q.try_get();
    });
}

#[test]
fn byte_queue_words_and_length_word_rewritten_after_open() {
    let make = || {
        let q = ByteQueue::create(Some(&unique_name("live-bytes")), 4, 100).unwrap();
        q.put(b"hello").unwrap();
        q.put(&[7; 100]).unwrap();
        let name = q.name().unwrap().to_owned();
        let peer = ByteQueue::open(&name).unwrap();
        ((q, peer), name)
    };
    let q = make().0.0;
    let payload = q.segment().header().unwrap().payload_offset as usize;
    drop(q);
    let mut fields = ring_live_fields(0, 4);
    fields.push(("slot0.len", payload, 8));
    fields.push(("slot1.len", payload + 128, 8));
    scribble_then_operate("byte queue", &fields, make, |(_, q)| {
        for _ in 0..3 {
            if let Ok(m) = q.try_get() {
                assert!(m.len() <= q.max_message());
            }
        }
        let _ = q.get_with_timeout(SHORT, |m| m.len());
        let _ = q.try_put(b"x");
        let _ = q.put_timeout(&[1; 100], SHORT);
        let _ = q.get_timeout(SHORT);
    });
}

#[test]
fn pipe_words_rewritten_after_open() {
    let cap = 2;
    let make = || {
        let a = Pipe::create(Some(&unique_name("live-pipe")), cap, 32).unwrap();
        let name = a.name().unwrap().to_owned();
        let b = Pipe::open(&name).unwrap();
        a.send(b"ping").unwrap();
        ((a, b), name)
    };
    let mut fields = vec![("opened[0]", CTL, 4), ("opened[1]", CTL + 4, 4)];
    fields.extend(ring_live_fields(64, cap));
    fields.extend(ring_live_fields(64 + RING_HEADER + cap * SLOT_META, cap));
    scribble_then_operate("pipe", &fields, make, |(a, b)| {
        let _ = b.try_recv();
        let _ = b.recv_timeout(SHORT);
        let _ = b.send_timeout(b"pong", SHORT);
        let _ = a.try_recv();
        let _ = a.recv_timeout(SHORT);
        let _ = (a.peer_connected(), b.peer_connected());
    });
}

/// Control-block offsets of a one-stripe dict of `str` keys (up to 64 bytes) and `u64`
/// values: the record, the live counters, the stripe head and journal, the buckets, node 1.
fn dict_fields() -> Vec<(&'static str, usize, usize)> {
    let stripe = CTL + 192;
    let mutex = std::mem::size_of::<libc::pthread_mutex_t>();
    let head = stripe + mutex;
    let journal = stripe + (mutex + 16).next_multiple_of(8);
    let buckets = stripe + 128;
    vec![
        ("meta.capacity", CTL + 32, 8),
        ("meta.nodes", CTL + 16, 4),
        ("meta.value_size", CTL + 40, 4),
        ("live.total", CTL + 128, 8),
        ("live.needs_recount", CTL + 136, 4),
        ("stripe.len", head, 4),
        ("stripe.free_head", head + 4, 4),
        ("stripe.fresh", head + 8, 4),
        ("stripe.state", head + 12, 4),
        ("journal.node", journal, 4),
        ("journal.bucket", journal + 4, 4),
        ("journal.prev", journal + 8, 4),
        ("journal.old_link", journal + 12, 4),
        ("journal.old_next", journal + 16, 4),
        ("journal.old_free", journal + 20, 4),
        ("journal.old_fresh", journal + 24, 4),
        ("journal.old_len", journal + 28, 4),
        ("bucket[0]", buckets, 4),
        ("bucket[1]", buckets + 4, 4),
        ("bucket[2]", buckets + 8, 4),
        ("bucket[3]", buckets + 12, 4),
    ]
}

#[test]
fn dict_words_rewritten_after_open() {
    let make = || {
        let d: SharedDict<str, u64> = DictOptions::new().stripes(1).create(Some(&unique_name("live-dict")), 4).unwrap();
        for (k, v) in [("a", 1), ("b", 2), ("c", 3)] {
            d.insert(k, v).unwrap();
        }
        d.remove("b").unwrap();
        let name = d.name().unwrap().to_owned();
        let peer = DictOptions::new().timeout(Some(SHORT)).open::<str, u64>(&name).unwrap();
        ((d, peer), name)
    };
    scribble_then_operate("dict", &dict_fields(), make, |(_, d)| {
        let _ = d.get("a");
        let _ = d.contains_key("c");
        let _ = d.insert("d", 4);
        let _ = d.update("a", 0, |v| v + 1);
        let _ = d.remove("c");
        let _ = d.len();
        if let Ok(all) = d.snapshot() {
            assert!(all.len() <= d.capacity());
        }
        let _ = d.clear();
        let _ = d.insert("e", 5);
    });
}

#[test]
fn list_words_rewritten_after_open() {
    let mutex = std::mem::size_of::<libc::pthread_mutex_t>();
    let head = CTL + 64 + mutex;
    let fields = [
        ("meta.capacity", CTL + 8, 8),
        ("meta.elem_size", CTL + 4, 4),
        ("state", head, 4),
        ("len", head + 8, 8),
        ("journal_index", head + 16, 8),
    ];
    let make = || {
        let l = SharedList::<u128>::create(Some(&unique_name("live-list")), 4).unwrap();
        l.push(12).unwrap();
        l.push(34).unwrap();
        let name = l.name().unwrap().to_owned();
        let mut peer = SharedList::<u128>::open(&name).unwrap();
        peer.set_timeout(Some(SHORT));
        ((l, peer), name)
    };
    scribble_then_operate("list", &fields, make, |(_, l)| {
        let _ = l.get(0);
        let _ = l.get(3);
        let _ = l.set(1, 56);
        let _ = l.update(0, |v| v.wrapping_add(1));
        let _ = l.push(78);
        if let Ok(all) = l.snapshot() {
            assert!(all.len() <= l.capacity());
        }
        let _ = l.pop();
        let _ = l.len();
        let _ = l.clear();
    });
    assert_eq!(HEADER_SIZE, CTL);
}
