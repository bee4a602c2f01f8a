//! A failing or retrying `open` while this process holds a shmkit lock leaks neither
//! mappings nor descriptors. (Mappings are only kept past their handle when a held lock
//! could lie inside them; see `sys::held`.) The tests count the process's descriptors and
//! mappings, which other tests' threads would disturb, so they take turns (`serial`).

mod common;
#[path = "common/hostile.rs"]
mod hostile;

use std::time::Duration;

use common::{ShmFile, unique_name};
use shmkit::segment::header::{self, MAGIC};
use shmkit::{SegmentError, SegmentOptions};

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn maps() -> usize {
    std::fs::read_to_string("/proc/self/maps").unwrap().lines().count()
}

#[test]
fn failed_and_retried_opens_leak_nothing_while_a_lock_is_held() {
    let _turn = common::serial();
    let lock = shmkit::sync::Mutex::new(0u32);
    let guard = lock.lock().unwrap();
    // Unpublished: the magic is there, the state word stays 0 for ever.
    let mut unpublished = vec![0u8; 4096];
    unpublished[..8].copy_from_slice(&MAGIC);
    let unpublished = ShmFile::new("leak", &unpublished);
    let zeros = ShmFile::new("leak", &[0u8; 4096]);
    // Every hostile header that open refuses (a segment it accepts is handed out, and a lock
    // could be taken inside it: that one is rightly kept while a lock is held).
    let hostile: Vec<ShmFile> = hostile::cases()
        .iter()
        .filter(|(_, bytes)| header::validate(bytes, bytes.len() as u64).is_err())
        .map(|(_, bytes)| ShmFile::new("leak", bytes))
        .collect();
    let quick = SegmentOptions::new().open_timeout(Duration::from_millis(300));
    // Warm up whatever the first open allocates once (thread-locals, the lock registry).
    let _ = quick.open(&zeros.0);
    let (fds0, maps0) = (fds(), maps());
    for f in [&unpublished, &zeros] {
        let e = quick.open(&f.0).unwrap_err();
        assert!(matches!(e, SegmentError::InitTimeout { .. }), "{e:?}");
    }
    let valid = ShmFile::new("leak", &hostile::valid_file());
    let e = shmkit::SharedArray::<f64>::open_with(&quick, &valid.0).unwrap_err();
    assert!(matches!(e, SegmentError::KindMismatch { .. }), "{e:?}");
    for f in &hostile {
        let _ = quick.open(&f.0);
        let _ = quick.open_any(&f.0);
    }
    let (fds1, maps1) = (fds(), maps());
    drop(guard);
    assert!(fds1 <= fds0, "{} descriptors leaked by failed opens while a lock was held", fds1 - fds0);
    assert!(maps1 <= maps0, "{} mappings leaked by failed opens while a lock was held", maps1 - maps0);
}

/// Objects created and dropped, and typed opens that fail after the segment was mapped,
/// leak nothing while this process holds a lock elsewhere; a segment that holds the held
/// lock itself is the one kept mapped.
#[test]
fn only_the_mapping_that_holds_a_held_lock_is_kept() {
    let _turn = common::serial();
    let lock = shmkit::sync::Mutex::new(0u32);
    let guard = lock.lock().unwrap();
    let named = unique_name("leak-typed");
    let keep = shmkit::SharedValue::<u64>::create(Some(&named), 1).unwrap();
    // Warm-up: the first create and open allocate thread-locals and the lock registry.
    drop(shmkit::SharedArray::<u64>::anonymous(16).unwrap());
    let _ = shmkit::SharedArray::<u32>::open(&named);
    let (fds0, maps0) = (fds(), maps());
    for _ in 0..50 {
        drop(shmkit::SharedArray::<u64>::anonymous(16).unwrap());
        drop(shmkit::SharedArray::<u64>::create(None, 16).unwrap());
        // Header fine, type wrong: refused after the segment layer mapped it.
        assert!(shmkit::SharedArray::<u32>::open(&named).is_err());
        let v = shmkit::SharedValue::<u64>::open(&named).unwrap();
        *v.lock().unwrap() += 1;
        drop(v);
    }
    let (fds1, maps1) = (fds(), maps());
    assert!(fds1 <= fds0, "{} descriptors leaked while an unrelated lock was held", fds1 - fds0);
    // A leak would be one mapping per iteration and kind (100 and more); a few may come and
    // go with the allocator's or the test harness's own threads.
    assert!(maps1 <= maps0 + 8, "{} mappings leaked while an unrelated lock was held", maps1 - maps0);
    // A guard forgotten inside a segment keeps exactly that mapping.
    let holder = shmkit::SharedObject::<shmkit::sync::Mutex<u64>>::anonymous(|_| {}).unwrap();
    std::mem::forget(holder.lock().unwrap());
    // (Its descriptor goes with it: descriptors are exact where mappings may jitter.)
    let fds2 = fds();
    drop(holder);
    assert_eq!(fds(), fds2, "the mapping under a forgotten guard is kept, with its descriptor");
    drop(shmkit::SharedArray::<u64>::anonymous(16).unwrap());
    assert_eq!(fds(), fds2, "an unrelated segment is not kept");
    drop(guard);
    assert_eq!(keep.get().unwrap(), 51);
}
