//! Liveness without pids: a SIGKILLed creator's segment becomes stale and `gc` removes it;
//! a segment mapped by any live process is never removed.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{exists, spawn_role, unique_name, wait_until};
use shmkit::segment::{gc, is_stale};
use shmkit::{Segment, SharedAtomic};

const NAME_VAR: &str = "SHMKIT_TEST_SEGMENT";
const FLAG_VAR: &str = "SHMKIT_TEST_FLAG";

/// Entry point of re-executed children.
#[test]
#[ignore = "child process role, run by the other tests"]
fn child_role() {
    let Some(role) = common::role() else { return };
    let name = std::env::var(NAME_VAR).unwrap();
    let flag = SharedAtomic::<u32>::open(&std::env::var(FLAG_VAR).unwrap()).unwrap();
    let _seg = match role.as_str() {
        "create" => Segment::create(Some(&name), 4096).unwrap(),
        "open" => Segment::open(&name).unwrap(),
        other => panic!("unknown role {other}"),
    };
    flag.store(1, Ordering::SeqCst);
    // Hold the segment until killed (bounded, so a broken parent cannot leave us behind).
    std::thread::sleep(Duration::from_secs(30));
}

fn start(role: &str, name: &str) -> (std::process::Child, SharedAtomic<u32>) {
    let flag = SharedAtomic::<u32>::create(None, 0).unwrap();
    let child = spawn_role("child_role", role, &[(NAME_VAR, name), (FLAG_VAR, flag.name().unwrap())]);
    wait_until("the child to map the segment", Duration::from_secs(10), || flag.load(Ordering::SeqCst) == 1);
    (child, flag)
}

fn kill(mut child: std::process::Child) {
    child.kill().unwrap();
    common::wait_child(&mut child, Duration::from_secs(10));
}

#[test]
fn a_sigkilled_creators_segment_is_stale_and_gc_removes_it() {
    let _serial = common::serial(); // gc is global: one gc test at a time
    let name = unique_name("stale");
    let (child, _flag) = start("create", &name);
    assert!(exists(&name));
    assert!(!is_stale(&name).unwrap(), "a live creator maps it");
    assert!(!gc().unwrap().contains(&name));
    assert!(exists(&name));
    kill(child);
    assert!(exists(&name), "SIGKILL skips the creator's unlink");
    assert!(is_stale(&name).unwrap(), "the kernel dropped the dead creator's flock");
    let removed = gc().unwrap();
    assert!(removed.contains(&name), "{removed:?}");
    assert!(!exists(&name));
}

#[test]
fn a_segment_mapped_by_any_live_process_is_never_removed() {
    let _serial = common::serial(); // gc is global: one gc test at a time
    let name = unique_name("live");
    let mut seg = Segment::create(Some(&name), 4096).unwrap();
    seg.persist();
    let (child, _flag) = start("open", &name);
    drop(seg); // now only the child maps it
    assert!(!is_stale(&name).unwrap());
    for _ in 0..3 {
        assert!(!gc().unwrap().contains(&name));
        assert!(exists(&name));
    }
    kill(child);
    assert!(is_stale(&name).unwrap());
    assert!(gc().unwrap().contains(&name));
    assert!(!exists(&name));
}

#[test]
fn own_mappings_count_as_live_and_foreign_files_are_left_alone() {
    let _serial = common::serial(); // gc is global: one gc test at a time
    let seg = Segment::create(None, 64).unwrap();
    let name = seg.name().unwrap().to_owned();
    assert!(!is_stale(&name).unwrap());
    let foreign = unique_name("foreign-gc");
    std::fs::write(format!("/dev/shm{foreign}"), b"not shmkit, nobody maps it").unwrap();
    let removed = gc().unwrap();
    assert!(!removed.contains(&name) && !removed.contains(&foreign), "{removed:?}");
    assert!(exists(&foreign));
    std::fs::remove_file(format!("/dev/shm{foreign}")).unwrap();
    drop(seg);
}
