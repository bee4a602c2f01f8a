//! Raw segments are byte-compatible with CPython's `multiprocessing.shared_memory`:
//! Python creates and writes, Rust opens and reads; Rust creates and writes, Python reads.
//! Skipped, with a printed reason, only when `python3` is missing (`.ci/run` installs it).

mod common;

use std::process::Command;

use shmkit::Segment;

fn python() -> Option<&'static str> {
    let ok = Command::new("python3").arg("-c").arg("import multiprocessing.shared_memory").status();
    if matches!(ok, Ok(s) if s.success()) {
        Some("python3")
    } else {
        eprintln!("SKIPPED: python3 with multiprocessing.shared_memory is not available");
        None
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

const PY_CREATE: &str = r#"
import sys
from multiprocessing import shared_memory, resource_tracker
name, size = sys.argv[1], int(sys.argv[2])
shm = shared_memory.SharedMemory(name=name, create=True, size=size)
shm.buf[:size] = bytes(i % 251 for i in range(size))
# Ownership passes to the Rust side, which unlinks it.
resource_tracker.unregister(shm._name, "shared_memory")
shm.close()
"#;

const PY_READ: &str = r#"
import sys
from multiprocessing import shared_memory, resource_tracker
name, size = sys.argv[1], int(sys.argv[2])
shm = shared_memory.SharedMemory(name=name, create=False)
# Python < 3.13 registers opened segments too and would unlink them at exit.
resource_tracker.unregister(shm._name, "shared_memory")
ok = shm.size >= size and bytes(shm.buf[:size]) == bytes(i % 251 for i in range(size))
shm.buf[0] = 42  # a write the Rust side checks
shm.close()
sys.exit(0 if ok else 3)
"#;

#[test]
fn python_creates_rust_reads() {
    let Some(py) = python() else { return };
    let name = common::unique_name("py2rs");
    let bare = name.trim_start_matches('/');
    let st = Command::new(py).args(["-c", PY_CREATE, bare, "10000"]).status().unwrap();
    assert!(st.success(), "python failed: {st}");
    let seg = Segment::open_raw(bare).expect("Rust opens Python's segment by the same name");
    assert_eq!(seg.name(), Some(name.as_str()));
    assert_eq!(seg.len(), 10000);
    // SAFETY: the Python writer has exited; nothing else writes.
    assert_eq!(unsafe { seg.as_slice() }, &pattern(10000)[..]);
    Segment::unlink(&name).unwrap();
    assert!(!common::exists(&name));
}

#[test]
fn rust_creates_python_reads() {
    let Some(py) = python() else { return };
    let seg = Segment::create_raw(None, 5000).unwrap();
    // SAFETY: nobody else maps it yet.
    unsafe { seg.as_mut_slice().copy_from_slice(&pattern(5000)) };
    let bare = seg.name().unwrap().trim_start_matches('/').to_owned();
    let st = Command::new(py).args(["-c", PY_READ, &bare, "5000"]).status().unwrap();
    assert_eq!(st.code(), Some(0), "python saw different bytes");
    // SAFETY: the Python process has exited.
    assert_eq!(unsafe { seg.as_slice()[0] }, 42, "Python's write is visible");
    let name = seg.name().unwrap().to_owned();
    drop(seg);
    assert!(!common::exists(&name));
}
