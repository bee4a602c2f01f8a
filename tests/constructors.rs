//! Every constructor and handle accessor on every segment-backed type: `create` (named and
//! random), `anonymous`, `open`, `open_with`, `open_or_create` (creating and opening),
//! `open_or_create_with`, `create_with`, `name`, `segment`, `persist`; and the deprecated
//! aliases.

mod common;

use std::time::Duration;

use common::{exists, unique_name};
use shmkit::channel::{ByteQueue, Pipe, PipeError, Queue};
use shmkit::manager::{DictOptions, SharedDict, SharedList};
use shmkit::{Segment, SegmentOptions, SharedArray, SharedAtomic, SharedObject, SharedValue};

fn opts() -> SegmentOptions {
    SegmentOptions::new().open_timeout(Duration::from_secs(2)).wait_for(Duration::from_millis(10))
}

/// Runs every constructor of `$ty`; `$args` are its own arguments, `$with` those of its
/// `create_with` after the name.
macro_rules! every_constructor {
    ($tag:literal, $ty:ty, ($($args:expr),*), ($($with:expr),*)) => {{
        let name = unique_name($tag);
        let a = <$ty>::create(Some(&name), $($args),*).unwrap();
        assert_eq!(a.name(), Some(name.as_str()));
        assert!(a.segment().created() && a.segment().unlinks_on_drop());
        let b = <$ty>::open(&name).unwrap();
        let c = <$ty>::open_with(&opts(), &name).unwrap();
        let d = <$ty>::open_or_create(&name, $($args),*).unwrap();
        let e = <$ty>::open_or_create_with(&opts(), &name, $($args),*).unwrap();
        for h in [&b, &c, &d, &e] {
            assert!(!h.segment().created(), "{}: opened, not created", $tag);
            assert_eq!(h.name(), Some(name.as_str()));
        }
        drop((a, b, c, d, e));
        assert!(!exists(&name), "{}: the creator unlinks", $tag);

        let f = <$ty>::open_or_create(&name, $($args),*).unwrap();
        assert!(f.segment().created(), "{}: open_or_create on a free name creates", $tag);
        drop(f);
        let f = <$ty>::open_or_create_with(&opts(), &name, $($args),*).unwrap();
        assert!(f.segment().created());
        drop(f);
        assert!(!exists(&name));

        let mut g = <$ty>::create_with(&opts(), Some(&name), $($with),*).unwrap();
        g.persist();
        assert!(!g.segment().unlinks_on_drop());
        drop(g);
        assert!(exists(&name), "{}: persisted", $tag);
        Segment::unlink(&name).unwrap();

        let h = <$ty>::create(None, $($args),*).unwrap();
        assert!(h.name().is_some_and(|n| n.starts_with("/shmkit-")));
        let i = <$ty>::anonymous($($args),*).unwrap();
        assert_eq!(i.name(), None);
        assert!(i.segment().created());
    }};
}

#[repr(C)]
struct Obj {
    n: std::sync::atomic::AtomicU64,
}
// SAFETY: #[repr(C)] and made only of ShmSafe fields.
unsafe impl shmkit::ShmSafe for Obj {}

#[test]
fn every_type_has_every_constructor() {
    every_constructor!("ctor-array", SharedArray<f64>, (16), (16, 4));
    every_constructor!("ctor-value", SharedValue<u32>, (7), (7));
    every_constructor!("ctor-atomic", SharedAtomic<u64>, (3), (3));
    every_constructor!("ctor-object", SharedObject<Obj>, (|_: &mut Obj| {}), (|_: &mut Obj| {}));
    every_constructor!("ctor-queue", Queue<u64>, (8), (8));
    every_constructor!("ctor-bytes", ByteQueue, (8, 100), (8, 100));
    every_constructor!("ctor-dict", SharedDict<str, u64>, (10), (10));
    every_constructor!("ctor-list", SharedList<u16>, (10), (10));
    #[cfg(feature = "serde")]
    every_constructor!("ctor-serde", shmkit::channel::SerdeQueue<String>, (8, 64), (8, 64));
}

#[test]
fn segments_have_every_constructor() {
    let name = unique_name("ctor-seg");
    let a = Segment::open_or_create(&name, 64).unwrap();
    let b = Segment::open_or_create(&name, 64).unwrap();
    let c = opts().open_or_create(&name, 64).unwrap();
    let d = Segment::open(&name).unwrap();
    let e = opts().open(&name).unwrap();
    let f = Segment::open_with(&opts(), &name).unwrap();
    let g = Segment::open_or_create_with(&opts(), &name, 64).unwrap();
    assert!(a.created() && !b.created() && !c.created() && !d.created() && !e.created());
    assert!(!f.created() && !g.created() && f.name() == Some(name.as_str()));
    drop((a, b, c, d, e, f, g));
    assert!(!exists(&name));
    let mut f = Segment::create(Some(&name), 64).unwrap();
    assert!(f.created());
    f.persist();
    drop(f);
    assert!(exists(&name));
    Segment::unlink(&name).unwrap();
    let h = Segment::create_with(&opts(), Some(&name), 64).unwrap();
    assert!(h.created() && h.unlinks_on_drop());
    drop(h);
    assert!(!exists(&name));
    assert!(Segment::anonymous(64).unwrap().name().is_none());
}

#[test]
fn pipes_have_every_constructor() {
    let name = unique_name("ctor-pipe");
    let a = Pipe::open_or_create(&name, 4, 32).unwrap();
    let b = Pipe::open_or_create_with(&opts(), &name, 4, 32).unwrap();
    assert_eq!((a.end(), b.end()), (0, 1), "the creator takes end 0, the opener end 1");
    assert!(a.segment().created() && !b.segment().created());
    assert!(matches!(Pipe::open_or_create(&name, 4, 32), Err(PipeError::EndTaken { .. })));
    assert!(matches!(Pipe::open_or_create(&name, 4, 33), Err(PipeError::Segment(_))), "another size");
    b.send(b"hi").unwrap();
    assert_eq!(a.recv().unwrap(), b"hi");
    drop((a, b));
    assert!(!exists(&name));
    let a = Pipe::create(Some(&name), 4, 32).unwrap();
    let b = Pipe::open(&name).unwrap();
    drop((a, b));
    let mut a = Pipe::create_with(&opts(), Some(&name), 4, 32).unwrap();
    let b = Pipe::open_with(&opts(), &name).unwrap();
    a.persist();
    drop((a, b));
    assert!(exists(&name));
    Segment::unlink(&name).unwrap();
    let (x, y) = Pipe::anonymous(2, 8).unwrap();
    assert_eq!((x.name(), y.name()), (None, None));
}

#[test]
fn dict_options_have_every_constructor() {
    let name = unique_name("ctor-dictopts");
    let o = DictOptions::new().stripes(2).segment(opts());
    let a: SharedDict<str, u64> = o.open_or_create(&name, 10).unwrap();
    let b: SharedDict<str, u64> = o.open_or_create(&name, 10).unwrap();
    let c: SharedDict<str, u64> = o.open(&name).unwrap();
    assert!(a.segment().created() && !b.segment().created() && !c.segment().created());
    assert_eq!(b.stripes(), 2);
    drop((a, b, c));
    assert!(!exists(&name));
    let a: SharedDict<u32, u8> = o.create(Some(&name), 4).unwrap();
    drop(a);
    let a: SharedDict<u32, u8> = o.anonymous(4).unwrap();
    assert_eq!(a.name(), None);
}

#[test]
#[allow(deprecated)]
fn deprecated_aliases_still_work() {
    let q = Queue::<u8>::create_named_with(&opts(), None, 4).unwrap();
    assert_eq!(q.capacity(), 4);
    let q = ByteQueue::create_named_with(&opts(), None, 4, 16).unwrap();
    assert_eq!(q.max_message(), 16);
}
