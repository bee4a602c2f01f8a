//! SharedDict behaviour: against a HashMap model, capacity and key limits, type checks at
//! open, hostile bytes, and real processes (forked and re-executed) updating one dict.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Exit, fork_child, serial, spawn_role, unique_name, wait_child, wait_pid};
use shmkit::manager::{DictOptions, ManagerError, SharedDict};
use shmkit::{Element, SharedArray, testing};

const NAME_VAR: &str = "SHMKIT_TEST_DICT";

/// Entry point of re-executed children.
#[test]
#[ignore = "child process role, run by the other tests"]
fn child_role() {
    let Some(role) = common::role() else { return };
    let d = SharedDict::<str, u64>::open(&std::env::var(NAME_VAR).unwrap()).unwrap();
    match role.as_str() {
        "count" => {
            for _ in 0..5000 {
                d.update("count", 0, |v| v + 1).unwrap();
            }
            d.insert(&format!("child-{}", std::process::id()), 1).unwrap();
        }
        other => panic!("unknown role {other}"),
    }
}

/// A tiny deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[test]
fn matches_a_hashmap_model() {
    for (capacity, stripes) in [(1usize, None), (7, Some(3)), (100, None), (5000, Some(64))] {
        let opts = DictOptions::new().max_key_len(12);
        let opts = if let Some(s) = stripes { opts.stripes(s) } else { opts };
        let d: SharedDict<str, u64> = opts.anonymous(capacity).unwrap();
        assert_eq!(d.stripes(), stripes.unwrap_or(d.stripes() as u32) as usize);
        let mut model: HashMap<String, u64> = HashMap::new();
        let mut rng = Rng(capacity as u64);
        let key_space = capacity as u64 * 2 + 3;
        for step in 0..20_000u64 {
            let key = format!("k{}", rng.next() % key_space);
            match rng.next() % 6 {
                0 | 1 => {
                    let r = d.insert(&key, step);
                    if model.contains_key(&key) || model.len() < capacity {
                        assert_eq!(r.unwrap(), model.insert(key, step));
                    } else {
                        assert!(matches!(r, Err(ManagerError::Full { .. })), "{r:?}");
                    }
                }
                2 => assert_eq!(d.remove(&key).unwrap(), model.remove(&key)),
                3 => {
                    let r = d.update(&key, 10, |v| v * 3 + 1);
                    if model.contains_key(&key) || model.len() < capacity {
                        let v = model.entry(key).or_insert(10);
                        *v = *v * 3 + 1;
                        assert_eq!(r.unwrap(), *v);
                    } else {
                        assert!(matches!(r, Err(ManagerError::Full { .. })), "{r:?}");
                    }
                }
                4 => assert_eq!(d.get(&key).unwrap(), model.get(&key).copied()),
                _ => assert_eq!(d.contains_key(&key).unwrap(), model.contains_key(&key)),
            }
            if step % 1000 == 0 {
                assert_eq!(d.len().unwrap(), model.len());
            }
        }
        let snap: HashMap<String, u64> = d.snapshot().unwrap().into_iter().collect();
        assert_eq!(snap, model, "capacity {capacity}");
        assert_eq!(d.len().unwrap(), model.len());
        assert_eq!(testing::stats(&d).rollbacks, 0);
    }
}

#[test]
fn keys_of_every_kind() {
    let d = SharedDict::<[u8], i64>::anonymous(10).unwrap();
    d.insert(b"\x00\xff", -1).unwrap();
    d.insert(b"", -2).unwrap();
    assert_eq!(d.get(b"").unwrap(), Some(-2));
    let mut snap = d.snapshot().unwrap();
    snap.sort();
    assert_eq!(snap, vec![(vec![], -2), (vec![0, 255], -1)]);

    let d = SharedDict::<[u8; 3], u8>::anonymous(10).unwrap();
    d.insert(&[1, 2, 3], 9).unwrap();
    assert_eq!(d.snapshot().unwrap(), vec![([1, 2, 3], 9)]);

    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
    struct Point {
        x: i32,
        y: i32,
    }
    impl Element for Point {
        const TYPE_NAME: &'static str = "Point";
    }
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    struct Cell {
        heat: f64,
        hits: [u32; 6],
    }
    impl Element for Cell {
        const TYPE_NAME: &'static str = "Cell";
    }
    let d = SharedDict::<Point, Cell>::create(None, 50).unwrap();
    let p = Point { x: 1, y: -1 };
    let nv = d.update(&p, Cell { heat: 0.5, hits: [0; 6] }, |mut c| {
        c.hits[2] += 1;
        c
    });
    assert_eq!(nv.unwrap().hits[2], 1);
    let peer = SharedDict::<Point, Cell>::open(d.name().unwrap()).unwrap();
    assert_eq!(peer.get(&p).unwrap().unwrap().heat, 0.5);
    assert_eq!(peer.get(&Point { x: 0, y: 0 }).unwrap(), None);
}

#[test]
fn limits_are_typed_errors() {
    let d: SharedDict<str, u32> = DictOptions::new().max_key_len(4).anonymous(2).unwrap();
    assert!(matches!(d.insert("12345", 1), Err(ManagerError::KeyTooLong { len: 5, max: 4 })));
    assert!(matches!(d.get("12345"), Err(ManagerError::KeyTooLong { .. })));
    d.insert("1234", 1).unwrap();
    d.insert("a", 1).unwrap();
    let full = d.insert("b", 1).unwrap_err();
    assert!(matches!(full, ManagerError::Full { capacity: 2, .. }));
    assert!(full.to_string().contains("larger capacity"), "{full}");
    d.insert("a", 7).unwrap(); // replacing is not growing
    d.remove("a").unwrap();
    d.insert("b", 1).unwrap();
    for bad in [
        DictOptions::new().anonymous::<str, u8>(0).unwrap_err(),
        DictOptions::new().stripes(0).anonymous::<str, u8>(10).unwrap_err(),
        DictOptions::new().stripes(2000).anonymous::<str, u8>(10).unwrap_err(),
    ] {
        assert!(matches!(bad, ManagerError::Invalid { .. }), "{bad:?}");
    }
    let long = DictOptions::new().max_key_len(1 << 20).anonymous::<str, u8>(10).unwrap_err();
    assert!(matches!(long, ManagerError::TooLarge { what: "max_key_len", .. }), "{long:?}");
}

#[test]
fn open_checks_kind_key_and_value_types() {
    let d = SharedDict::<str, u64>::create(Some(&unique_name("dict-types")), 10).unwrap();
    let name = d.name().unwrap();
    assert!(SharedDict::<str, u64>::open(name).is_ok());
    let e = SharedDict::<u64, u64>::open(name).unwrap_err();
    assert!(e.to_string().contains("keys of type str, not u64"), "{e}");
    assert!(matches!(SharedDict::<[u8], u64>::open(name), Err(ManagerError::KeyTypeMismatch { .. })));
    assert!(matches!(SharedDict::<str, i64>::open(name), Err(ManagerError::Segment(_))));
    let a = SharedArray::<u64>::create(None, 10).unwrap();
    assert!(matches!(SharedDict::<str, u64>::open(a.name().unwrap()), Err(ManagerError::Segment(_))));
    assert!(matches!(shmkit::SharedList::<u64>::open(name), Err(ManagerError::Segment(_))));
}

#[test]
fn hostile_bytes_give_errors_not_panics() {
    let mut rng = Rng(7);
    for round in 0..300 {
        let d: SharedDict<str, u64> = DictOptions::new().max_key_len(8).stripes(2).anonymous(20).unwrap();
        for i in 0..15 {
            d.insert(&format!("k{i}"), i).unwrap();
        }
        for _ in 0..1 + round % 8 {
            // SAFETY: nobody else uses this dict.
            unsafe { testing::scribble(&d, rng.next() as usize, rng.next() as u8) };
        }
        for i in 0..30 {
            let k = format!("k{}", i % 20);
            let _ = d.get(&k);
            let _ = d.update(&k, 0, |v| v + 1);
            if i % 3 == 0 {
                let _ = d.remove(&k);
            }
            let _ = d.insert(&format!("n{i}"), 1);
        }
        let _ = d.snapshot();
        let _ = d.len();
    }
}

#[test]
fn forked_processes_update_exactly() {
    let _serial = serial();
    let d = SharedDict::<str, u64>::anonymous(1000).unwrap();
    let children: Vec<_> = (0..4)
        .map(|c| {
            fork_child(|| {
                for i in 0..20_000u64 {
                    if d.update("shared", 0, |v| v + 1).is_err() {
                        return 1;
                    }
                    if d.update(&format!("c{c}-{}", i % 50), 0, |v| v + 1).is_err() {
                        return 2;
                    }
                }
                0
            })
        })
        .collect();
    for pid in children {
        assert_eq!(wait_pid(pid, Duration::from_secs(120)), Exit::Code(0));
    }
    assert_eq!(d.get("shared").unwrap(), Some(80_000));
    let snap = d.snapshot().unwrap();
    assert_eq!(snap.len(), 1 + 4 * 50);
    assert!(snap.iter().filter(|(k, _)| k != "shared").all(|(_, v)| *v == 400));
    assert_eq!(d.len().unwrap(), 201);
}

#[test]
fn unrelated_processes_open_by_name() {
    let d = SharedDict::<str, u64>::create(Some(&unique_name("dict-reexec")), 100).unwrap();
    let name = d.name().unwrap().to_owned();
    let mut kids: Vec<_> = (0..3).map(|_| spawn_role("child_role", "count", &[(NAME_VAR, name.as_str())])).collect();
    for k in &mut kids {
        assert_eq!(wait_child(k, Duration::from_secs(120)), Exit::Code(0));
    }
    assert_eq!(d.get("count").unwrap(), Some(15_000));
    assert_eq!(d.len().unwrap(), 4);
    drop(d);
    assert!(!common::exists(&name));
}

#[test]
fn a_holder_killed_under_the_lock_is_recovered() {
    let _serial = serial();
    let d: SharedDict<str, u64> = DictOptions::new().stripes(1).anonymous(10).unwrap();
    d.insert("k", 5).unwrap();
    // The child dies inside `f`, holding the stripe lock.
    let pid = fork_child(|| {
        let _ = d.update("k", 0, |_| {
            // SAFETY: leaving at once is the point: a crash while the lock is held.
            unsafe { libc::_exit(3) }
        });
        0
    });
    assert_eq!(wait_pid(pid, Duration::from_secs(30)), Exit::Code(3));
    let mut d = d;
    d.set_timeout(Some(Duration::from_secs(10)));
    assert_eq!(d.update("k", 0, |v| v + 1).unwrap(), 6);
    assert_eq!(testing::stats(&d).owner_died, 1);
    assert_eq!(d.len().unwrap(), 1);
}

#[test]
fn a_timeout_reports_a_held_stripe() {
    let _serial = serial();
    let d: SharedDict<str, u64> = DictOptions::new().stripes(1).anonymous(10).unwrap();
    let ready = SharedArray::<u64>::anonymous(1).unwrap();
    let pid = fork_child(|| {
        let _ = d.update("k", 0, |v| {
            ready.atomics(..).unwrap()[0].store(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(30));
            v
        });
        0
    });
    common::wait_until("the child to hold the stripe", Duration::from_secs(10), || {
        ready.atomics(..).unwrap()[0].load(std::sync::atomic::Ordering::SeqCst) == 1
    });
    let mut d = d;
    d.set_timeout(Some(Duration::from_millis(50)));
    let e = d.get("k").unwrap_err();
    assert!(matches!(e, ManagerError::Lock(shmkit::LockError::Timeout)), "{e:?}");
    common::kill(pid, libc::SIGKILL);
    assert_eq!(wait_pid(pid, Duration::from_secs(10)), Exit::Signal(libc::SIGKILL));
    d.set_timeout(Some(Duration::from_secs(10)));
    assert_eq!(d.get("k").unwrap(), None);
}

#[test]
fn a_panicking_update_changes_nothing() {
    let d = SharedDict::<str, u64>::anonymous(2).unwrap();
    d.insert("a", 1).unwrap();
    for key in ["a", "new"] {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d.update(key, 0, |_| panic!("in f"))));
        assert!(r.is_err());
    }
    assert_eq!(d.snapshot().unwrap(), vec![("a".to_string(), 1)]);
    assert_eq!(d.len().unwrap(), 1);
    d.insert("b", 2).unwrap(); // the panicking insert gave its place back
    assert!(matches!(d.insert("c", 3), Err(ManagerError::Full { .. })));
}

#[test]
fn using_the_dict_inside_update_is_an_error_not_a_deadlock() {
    let d: SharedDict<str, u64> = DictOptions::new().stripes(1).anonymous(4).unwrap();
    let mut inner = None;
    d.update("k", 0, |v| {
        inner = Some(d.get("k"));
        v + 1
    })
    .unwrap();
    assert!(matches!(inner, Some(Err(ManagerError::Lock(shmkit::LockError::WouldDeadlock)))), "{inner:?}");
    assert_eq!(d.get("k").unwrap(), Some(1));
}

#[test]
fn threads_share_a_handle() {
    let d = SharedDict::<u32, u64>::anonymous(64).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let d = &d;
            s.spawn(move || {
                for i in 0..4800u32 {
                    d.update(&(i % 16), 0, |v| v + 1).unwrap();
                    d.update(&(100 + t), 0, |v| v + 1).unwrap();
                }
            });
        }
    });
    let snap = d.snapshot().unwrap();
    assert_eq!(snap.len(), 20);
    assert!(snap.iter().all(|&(k, v)| if k < 16 { v == 4 * 4800 / 16 } else { v == 4800 }), "{snap:?}");
}
