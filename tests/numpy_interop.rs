//! numpy on the same segments (`python/shmkit.py`): Rust workers and a Python process fill
//! disjoint ranges of one array and both see the result; Python creates an array that Rust
//! opens (its claim table initialised lazily from zero bytes); mismatches are refused on
//! both sides. Skipped, with a printed reason, only when python3 or numpy is missing
//! (`.ci/run` installs them, so CI always runs these).

mod common;
#[path = "common/python.rs"]
mod py;

use std::time::Duration;

use common::{Exit, fork_child, wait_pid};
use py::{check, python};
use shmkit::{ClaimError, Segment, SegmentError, SharedArray, SharedValue};

const PY_FILL: &str = r#"
import sys, numpy as np, shmkit
a = shmkit.open_array(sys.argv[1], "f64")
n = len(a.array)
half = n // 2
ok = np.array_equal(a.array[:half], np.arange(half) * 1.5)   # what the Rust workers wrote
a.array[half:] = np.arange(half, n) * 1.5                    # Python's own range
a.close()
sys.exit(0 if ok else 3)
"#;

#[test]
fn rust_workers_and_python_fill_disjoint_ranges() {
    let _serial = common::serial();
    let a = SharedArray::<f64>::create(None, 10_000).unwrap();
    let name = a.name().unwrap().to_owned();
    let kids: Vec<_> = [0..2500, 2500..5000]
        .into_iter()
        .map(|r| {
            fork_child(|| {
                let mine = SharedArray::<f64>::open(&name).unwrap();
                let start = r.start;
                for (k, x) in mine.claim_mut(r).unwrap().iter_mut().enumerate() {
                    *x = (start + k) as f64 * 1.5;
                }
                0
            })
        })
        .collect();
    for k in kids {
        assert_eq!(wait_pid(k, Duration::from_secs(20)), Exit::Code(0));
    }
    let Some(out) = python(PY_FILL, &[&name]) else { return };
    assert_eq!(check(&out), 0, "python saw the Rust workers' range");
    let all = a.copy_to_vec().unwrap();
    assert!(all.iter().enumerate().all(|(i, &x)| x == i as f64 * 1.5), "Rust sees Python's range");
}

const PY_CREATE: &str = r#"
import sys, numpy as np, shmkit
a = shmkit.create_array(sys.argv[1], "i32", 100)
a.array[:] = np.arange(100, dtype=np.int32) - 7
a.persist()
a.close()
"#;

#[test]
fn python_creates_an_array_rust_opens_and_claims() {
    let name = common::unique_name("numpy-made");
    let Some(out) = python(PY_CREATE, &[&name]) else { return };
    assert_eq!(check(&out), 0);
    let a = SharedArray::<i32>::open(&name).expect("Rust opens the numpy-made array");
    assert!(matches!(SharedArray::<f32>::open(&name), Err(SegmentError::TypeMismatch { .. })));
    // The first claim initialises the zero-filled claim table.
    assert_eq!(a.copy_to_vec().unwrap(), (0..100).map(|i| i - 7).collect::<Vec<i32>>());
    let mut w = a.try_claim_mut(10..20).unwrap();
    assert!(matches!(a.try_claim(15..16), Err(ClaimError::WouldDeadlock { .. })));
    w.fill(1);
    drop(w);
    assert_eq!(a.claim_slots().unwrap(), (0, 32));
    Segment::unlink(&name).unwrap();
}

const PY_REFUSE: &str = r#"
import sys, shmkit
try:
    shmkit.open_array(sys.argv[1], "f64")
    sys.exit(1)
except shmkit.TypeMismatch:
    pass
try:
    shmkit.open_array(sys.argv[2], "f64")
    sys.exit(2)
except shmkit.KindMismatch:
    pass
try:
    shmkit.open_array("/shmkit-does-not-exist-xyz", "f64")
    sys.exit(4)
except shmkit.NotFound:
    pass
"#;

#[test]
fn python_refuses_mismatches_as_rust_does() {
    let a = SharedArray::<u32>::create(None, 8).unwrap();
    let v = SharedValue::<f64>::create(None, 1.0).unwrap();
    let Some(out) = python(PY_REFUSE, &[a.name().unwrap(), v.name().unwrap()]) else { return };
    assert_eq!(check(&out), 0);
}
