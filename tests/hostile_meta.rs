//! Hostile bytes at open: for every header field and every fixed meta field of every kind of
//! the shared, channel and manager areas (array, value, atomic, object, queue, byte queue,
//! serde queue, pipe, dict, list), a real named segment gets the field set to 0, to its
//! maximum and off by one (through the file in /dev/shm, as a peer would write it), and
//! `open` must return a typed error: never panic, hang or accept the lie. Informational
//! fields (creator pid, creation time, the header's reserved flags) may be accepted.
//!
//! Fields that change while the object is in use are scribbled after open instead
//! (`tests/hostile_live.rs`).

mod common;
#[path = "common/hostile_bytes.rs"]
mod hostile;

use std::fmt::{Debug, Display};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;

use hostile::{CTL, RING_HEADER, SLOT_META, hostile_values, path, read_word, write_word};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use common::unique_name;
use shmkit::channel::{ByteQueue, Pipe, Queue};
use shmkit::manager::{DictOptions, SharedDict, SharedList};
use shmkit::shared::SharedObject;
use shmkit::sync::Mutex;
use shmkit::{SegmentOptions, SharedArray, SharedAtomic, SharedValue};

/// Whether a changed field must be refused.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Reject,
    /// Informational: accepting it is fine, but still no panic.
    Any,
    /// Refused except for this one value (the header version: 2 still opens, as 1-D).
    RejectBut(u64),
}
use Verdict::*;

struct Field {
    name: String,
    at: usize,
    width: usize,
    verdict: Verdict,
}

fn field(name: impl Into<String>, at: usize, width: usize, verdict: Verdict) -> Field {
    Field { name: name.into(), at, width, verdict }
}

fn header_fields() -> Vec<Field> {
    vec![
        field("magic", 0, 8, Reject),
        field("version", 8, 4, RejectBut(shmkit::segment::header::OLDEST_FORMAT_VERSION.into())),
        field("state", 12, 4, Reject),
        field("kind", 16, 4, Reject),
        field("elem_align", 20, 4, Reject),
        field("elem_size", 24, 8, Reject),
        field("payload_offset", 32, 8, Reject),
        field("payload_len", 40, 8, Reject),
        field("elem_count", 48, 8, Reject),
        field("creator_pid", 56, 4, Any),
        field("flags", 60, 4, Any),
        field("created_unix_ns", 64, 8, Any),
        field("elem_name[0]", 72, 1, Reject),
        field("elem_name[55]", 127, 1, Reject),
    ]
}

/// The fixed words of the ring whose header starts at control-block offset `ring`.
fn ring_fields(label: &str, ring: usize) -> Vec<Field> {
    let at = CTL + ring;
    let mut v = vec![
        field(format!("{label}.format"), at, 4, Reject),
        field(format!("{label}.flags"), at + 4, 4, Reject),
        field(format!("{label}.capacity"), at + 8, 8, Reject),
        field(format!("{label}.stride"), at + 16, 8, Reject),
        field(format!("{label}.max_msg"), at + 24, 8, Reject),
        field(format!("{label}.data_offset"), at + 32, 8, Reject),
        field(format!("{label}.abandoned"), at + 40, 8, Any),
        field(format!("{label}.check"), at + 48, 8, Reject),
    ];
    // Live words: any value is fine at open (they are checked on every use).
    for (name, off, width) in [("head", 64, 8), ("tail", 128, 8), ("consumers", 192, 8), ("producers", 256, 8)] {
        v.push(field(format!("{label}.{name}"), at + off, width, Any));
    }
    v
}

/// Set each field of segment `name` to each hostile value in turn and call `open`.
/// `waits_on_state_zero`: the kind's `open` has no timeout option, so a state word of 0
/// (a creator still initialising) would wait its default 5 s: skip that one value.
fn sweep<E: Debug + Display>(
    label: &str,
    name: &str,
    fields: &[Field],
    waits_on_state_zero: bool,
    open: impl Fn() -> Result<(), E>,
) {
    let file = OpenOptions::new().read(true).write(true).open(path(name)).expect("open the segment file");
    open().unwrap_or_else(|e| panic!("{label}: the untouched segment does not open: {e}"));
    for f in fields {
        let orig = read_word(&file, f.at, f.width);
        for v in hostile_values(orig, f.width) {
            if waits_on_state_zero && f.at == 12 && v == 0 {
                continue;
            }
            write_word(&file, f.at, f.width, v);
            let start = Instant::now();
            let r = catch_unwind(AssertUnwindSafe(&open));
            write_word(&file, f.at, f.width, orig);
            let r = r.unwrap_or_else(|_| panic!("{label}: open panicked with {} = {v:#x}", f.name));
            assert!(start.elapsed() < Duration::from_secs(2), "{label}: open took {:?}", start.elapsed());
            match r {
                Ok(()) => assert!(
                    f.verdict == Any || f.verdict == RejectBut(v),
                    "{label}: {} = {v:#x} (was {orig:#x}) was accepted",
                    f.name
                ),
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
    }
    open().unwrap_or_else(|e| panic!("{label}: the restored segment does not open: {e}"));
}

fn quick() -> SegmentOptions {
    SegmentOptions::new().open_timeout(Duration::ZERO)
}

#[test]
fn array_value_atomic_object_headers() {
    let a = SharedArray::<f64>::create(Some(&unique_name("hostile-array")), 100).unwrap();
    sweep("array", a.name().unwrap(), &header_fields(), false, || {
        SharedArray::<f64>::open_with(&quick(), a.name().unwrap()).map(|a| assert_eq!(a.len(), 100))
    });
    let v = SharedValue::<f64>::create(Some(&unique_name("hostile-value")), 1.5).unwrap();
    sweep("value", v.name().unwrap(), &header_fields(), true, || {
        SharedValue::<f64>::open(v.name().unwrap()).map(|v| assert_eq!(v.get().unwrap(), 1.5))
    });
    let c = SharedAtomic::<u64>::create(Some(&unique_name("hostile-atomic")), 7).unwrap();
    sweep("atomic", c.name().unwrap(), &header_fields(), true, || {
        SharedAtomic::<u64>::open(c.name().unwrap())
            .map(|c| assert_eq!(c.load(std::sync::atomic::Ordering::Relaxed), 7))
    });
    let o = SharedObject::<Mutex<u64>>::create(Some(&unique_name("hostile-object")), |_| ()).unwrap();
    sweep("object", o.name().unwrap(), &header_fields(), false, || {
        SharedObject::<Mutex<u64>>::open_with(&quick(), o.name().unwrap()).map(|o| assert_eq!(*o.lock().unwrap(), 0))
    });
}

#[test]
fn queue_header_and_ring() {
    let q = Queue::<u64>::create(Some(&unique_name("hostile-queue")), 4).unwrap();
    q.put(5).unwrap();
    let mut fields = header_fields();
    fields.extend(ring_fields("ring", 0));
    fields.push(field("slot0.stamp", CTL + RING_HEADER, 8, Any));
    sweep("queue", q.name().unwrap(), &fields, false, || {
        Queue::<u64>::open_with(&quick(), q.name().unwrap()).map(|q| assert_eq!(q.capacity(), 4))
    });
}

#[test]
fn byte_queue_header_and_ring() {
    let q = ByteQueue::create(Some(&unique_name("hostile-bytes")), 4, 100).unwrap();
    let mut fields = header_fields();
    fields.extend(ring_fields("ring", 0));
    sweep("byte queue", q.name().unwrap(), &fields, false, || {
        ByteQueue::open_with(&quick(), q.name().unwrap()).map(|q| assert_eq!((q.capacity(), q.max_message()), (4, 100)))
    });
}

#[cfg(feature = "serde")]
#[test]
fn serde_queue_header_and_ring() {
    let q = shmkit::channel::SerdeQueue::<String>::create(Some(&unique_name("hostile-serde")), 3, 64).unwrap();
    let mut fields = header_fields();
    fields.extend(ring_fields("ring", 0));
    sweep("serde queue", q.name().unwrap(), &fields, true, || {
        shmkit::channel::SerdeQueue::<String>::open(q.name().unwrap()).map(|q| assert_eq!(q.as_bytes().capacity(), 3))
    });
}

#[test]
fn pipe_header_and_rings() {
    let cap = 4;
    let end = Pipe::create(Some(&unique_name("hostile-pipe")), cap, 100).unwrap();
    let name = end.name().unwrap().to_owned();
    let mut fields: Vec<Field> = header_fields().into_iter().filter(|f| f.verdict == Reject).collect();
    fields.extend(ring_fields("ring0", 64).into_iter().filter(|f| f.verdict == Reject));
    fields.extend(ring_fields("ring1", 64 + RING_HEADER + cap * SLOT_META).into_iter().filter(|f| f.verdict == Reject));
    let file = OpenOptions::new().read(true).write(true).open(path(&name)).unwrap();
    // A pipe connects once: after each successful open, forget that end 1 connected.
    sweep("pipe", &name, &fields, true, || {
        let r = Pipe::open(&name).map(|e| assert_eq!(e.max_message(), 100));
        write_word(&file, CTL + 4, 4, 0);
        r
    });
}

#[test]
fn dict_header_and_record() {
    let d = SharedDict::<str, u64>::create(Some(&unique_name("hostile-dict")), 100).unwrap();
    d.insert("k", 1).unwrap();
    let mut fields = header_fields();
    for (name, off, width) in [
        ("magic", 0, 4),
        ("key_kind", 4, 4),
        ("key_cap", 8, 4),
        ("stripes", 12, 4),
        ("nodes", 16, 4),
        ("buckets", 20, 4),
        ("stripe_stride", 24, 4),
        ("node_stride", 28, 4),
        ("capacity", 32, 8),
        ("value_size", 40, 4),
        ("value_align", 44, 4),
        ("key_name[0]", 48, 1),
        ("key_name[10]", 58, 1),
        ("check", 104, 8),
        ("reserved", 112, 8),
        ("reserved[8..]", 120, 8),
    ] {
        fields.push(field(format!("meta.{name}"), CTL + off, width, Reject));
    }
    for (name, off, width) in [("total", 128, 8), ("needs_recount", 136, 4), ("owner_died", 144, 8)] {
        fields.push(field(format!("live.{name}"), CTL + off, width, Any));
    }
    let opts = DictOptions::new().segment(quick()).timeout(Some(Duration::from_millis(200)));
    sweep("dict", d.name().unwrap(), &fields, false, || {
        opts.open::<str, u64>(d.name().unwrap()).map(|d| assert_eq!(d.capacity(), 100))
    });
    // The same bytes under another value type of the same size: refused by the header.
    assert!(SharedDict::<str, f64>::open(d.name().unwrap()).is_err());
}

#[test]
fn dict_value_size_must_match_the_value_type() {
    // A record that claims 16-byte values (with a stride that still fits and a fresh check
    // word, as a peer that knows the format would write) must not make every value access
    // run past the payload.
    let d = SharedDict::<u64, u64>::create(Some(&unique_name("hostile-dict-vsize")), 64).unwrap();
    d.insert(&1, 11).unwrap();
    let file = OpenOptions::new().read(true).write(true).open(path(d.name().unwrap())).unwrap();
    write_word(&file, CTL + 40, 4, 16);
    write_word(&file, CTL + 44, 4, 16);
    fix_dict_check(&file);
    let e = SharedDict::<u64, u64>::open(d.name().unwrap()).unwrap_err();
    assert!(e.to_string().contains("values of 16 bytes"), "{e}");
}

/// Recompute the dict record's check word (FNV-1a of the 128-byte record with it zero).
fn fix_dict_check(file: &File) {
    let mut rec = [0u8; 128];
    file.read_exact_at(&mut rec, CTL as u64).unwrap();
    rec[104..112].fill(0);
    let h = rec.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    write_word(file, CTL + 104, 8, h);
}

#[test]
fn list_header_and_record() {
    let l = SharedList::<u64>::create(Some(&unique_name("hostile-list")), 10).unwrap();
    l.push(3).unwrap();
    let mut fields = header_fields();
    for (name, off, width) in [
        ("magic", 0, 4),
        ("elem_size", 4, 4),
        ("capacity", 8, 8),
        ("elem_align", 16, 4),
        ("pad", 20, 4),
        ("check", 24, 8),
        ("reserved", 32, 8),
        ("reserved[24..]", 56, 8),
    ] {
        fields.push(field(format!("meta.{name}"), CTL + off, width, Reject));
    }
    sweep("list", l.name().unwrap(), &fields, true, || {
        SharedList::<u64>::open(l.name().unwrap()).map(|l| assert_eq!(l.capacity(), 10))
    });
}
