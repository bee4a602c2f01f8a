//! Shaped arrays across Rust and numpy: a Rust `[rows, cols]` array is a `(rows, cols)` numpy
//! view, a numpy-made `(a, b, c)` array opens in Rust with that shape, shape mismatches are
//! refused on both sides, and `python/` installs with pip as the `shmkit` package.

mod common;
#[path = "common/python.rs"]
mod py;

use std::process::Command;

use py::{check, python, python_with};
use shmkit::{Rows, Segment, SegmentError, SharedArray};

const PY_VIEW: &str = r#"
import sys, numpy as np, shmkit
a = shmkit.open_array(sys.argv[1], "f64")
ok = a.array.shape == (3, 4) and a.shape == (3, 4) and a.array[1, 2] == 12.0
a.array[2, :] = np.arange(4) + 100.0        # Python writes row 2
try:
    shmkit.open_array(sys.argv[1], "f64", shape=(4, 3))
    ok = False
except shmkit.ShapeMismatch:
    pass
a.close()
sys.exit(0 if ok else 3)
"#;

#[test]
fn a_rust_grid_is_a_shaped_numpy_view() {
    let a = SharedArray::<f64>::create(None, [3, 4]).unwrap();
    a.claim_mut(Rows(1..2)).unwrap()[2] = 12.0;
    let Some(out) = python(PY_VIEW, &[a.name().unwrap()]) else { return };
    assert_eq!(check(&out), 0, "python saw the shape and the value");
    assert_eq!(&*a.claim(Rows(2..3)).unwrap(), &[100.0, 101.0, 102.0, 103.0]);
}

const PY_CREATE: &str = r#"
import sys, numpy as np, shmkit
a = shmkit.create_array(sys.argv[1], "i64", (2, 3, 4))
a.array[...] = np.arange(24).reshape(2, 3, 4)
a.persist()
a.close()
for bad in [(), (0, 3), (1,) * 8]:
    try:
        shmkit.create_array(sys.argv[1] + "-bad", "i64", bad)
        sys.exit(4)
    except shmkit.ShmkitError:
        pass
"#;

#[test]
fn numpy_creates_a_shaped_array_rust_opens() {
    let name = common::unique_name("numpy-shaped");
    let Some(out) = python(PY_CREATE, &[&name]) else { return };
    assert_eq!(check(&out), 0);
    let a = SharedArray::<i64>::open(&name).expect("Rust opens the numpy-made array");
    assert_eq!(a.shape().dims(), [2, 3, 4]);
    assert!(matches!(SharedArray::<i64>::open_or_create(&name, [6, 4]), Err(SegmentError::ShapeMismatch { .. })));
    assert_eq!(a.copy_to_vec().unwrap(), (0..24).collect::<Vec<i64>>());
    assert_eq!(&*a.claim(Rows(1..2)).unwrap(), &(12..24).collect::<Vec<i64>>()[..]);
    Segment::unlink(&name).unwrap();
}

const PY_INSTALLED: &str = r#"
import sys, shmkit
sys.exit(0 if shmkit.__file__.startswith(sys.argv[1]) and shmkit.FORMAT_VERSION == 3 else 5)
"#;

/// `pip install ./python` gives an importable `shmkit` (into a scratch directory; built with
/// the running Python's setuptools and wheel when it has them, else pip fetches them).
#[test]
fn python_dir_is_a_pip_installable_package() {
    if !py::has_numpy() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("shmkit-pip-{}", std::process::id()));
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/python");
    let pip = |isolated: bool| {
        let _ = std::fs::remove_dir_all(&dir);
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "pip", "install", "--quiet", "--no-deps", "--target"]).arg(&dir).arg(src);
        if !isolated {
            cmd.arg("--no-build-isolation");
        }
        cmd.output().unwrap()
    };
    let mut out = pip(false);
    if !out.status.success() {
        out = pip(true);
    }
    assert!(out.status.success(), "pip install ./python failed: {}", String::from_utf8_lossy(&out.stderr));
    let d = dir.to_str().unwrap();
    let run = python_with(d, PY_INSTALLED, &[d]).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(check(&run), 0, "the installed module is imported");
}
