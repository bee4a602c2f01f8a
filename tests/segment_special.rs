//! Special files at a segment's name (a FIFO, a directory, a unix socket, a symlink) and
//! empty files: every open path of the library refuses them promptly with a typed error
//! that says what the file is, instead of blocking for ever or advising raw mode.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::unique_name;
use shmkit::segment::{self, FileKind};
use shmkit::{Segment, SegmentError, SegmentOptions, SharedArray};

/// How long any single call may take before the test calls it a hang.
const PROMPT: Duration = Duration::from_secs(3);

/// Run `f` on a helper thread and wait at most `PROMPT` for it: a call that blocks for
/// ever fails the test instead of hanging it (the stuck thread dies with the process).
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(PROMPT).unwrap_or_else(|_| panic!("{what} did not return within {PROMPT:?}"))
}

/// A special file planted at a unique name in /dev/shm, removed on drop.
pub struct Planted {
    pub name: String,
    pub kind: FileKind,
    path: String,
    _keep: Option<Box<dyn std::any::Any>>,
}

impl Planted {
    pub fn new(kind: FileKind) -> Planted {
        let name = unique_name("special");
        let path = format!("/dev/shm{name}");
        let mut keep: Option<Box<dyn std::any::Any>> = None;
        match kind {
            FileKind::Fifo => {
                let c = std::ffi::CString::new(path.clone()).unwrap();
                // SAFETY: `c` is a valid NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0, "{}", std::io::Error::last_os_error());
            }
            FileKind::Directory => std::fs::create_dir(&path).unwrap(),
            FileKind::Socket => keep = Some(Box::new(std::os::unix::net::UnixListener::bind(&path).unwrap())),
            FileKind::Symlink => {
                // To a real, valid segment: following it would "work", which is the danger.
                let target = Segment::create(None, 64).unwrap();
                std::os::unix::fs::symlink(format!("/dev/shm{}", target.name().unwrap()), &path).unwrap();
                keep = Some(Box::new(target));
            }
            other => panic!("cannot plant a {other}"),
        }
        Planted { name, kind, path, _keep: keep }
    }

    pub fn all() -> Vec<Planted> {
        [FileKind::Fifo, FileKind::Directory, FileKind::Socket, FileKind::Symlink]
            .into_iter()
            .map(Planted::new)
            .collect()
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        if self.kind == FileKind::Directory {
            let _ = std::fs::remove_dir(&self.path);
        } else {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn assert_refused(what: &str, p: &Planted, r: Result<(), SegmentError>) {
    match r {
        Err(SegmentError::SpecialFile { ref name, what: kind }) if kind == p.kind && *name == p.name => {
            let msg = r.unwrap_err().to_string();
            assert!(msg.contains(&p.kind.to_string()), "{what}: the message names the file type: {msg}");
            assert!(!msg.contains("raw mode"), "{what}: raw mode would not help: {msg}");
        }
        other => panic!("{what} on a {}: expected SpecialFile, got {other:?}", p.kind),
    }
}

#[test]
fn every_open_path_refuses_special_files_promptly() {
    let planted = Planted::all();
    for p in &planted {
        let n = p.name.clone();
        let quick = SegmentOptions::new().open_timeout(Duration::from_millis(500));
        let q = quick.clone();
        assert_refused("Segment::open", p, bounded("open", move || q.open(&n).map(drop)));
        let (n, q) = (p.name.clone(), quick.clone());
        assert_refused("open_any", p, bounded("open_any", move || q.open_any(&n).map(drop)));
        let n = p.name.clone();
        assert_refused("open_raw", p, bounded("open_raw", move || Segment::open_raw(&n).map(drop)));
        let (n, q) = (p.name.clone(), quick.clone());
        assert_refused(
            "SharedArray::open",
            p,
            bounded("array", move || SharedArray::<f64>::open_with(&q, &n).map(drop)),
        );
        let n = p.name.clone();
        assert_refused("is_stale", p, bounded("is_stale", move || segment::is_stale(&n).map(drop)));
        let n = p.name.clone();
        assert_refused("status", p, bounded("status", move || segment::status(&n).map(drop)));
        let n = p.name.clone();
        assert_refused("remove_if_stale", p, bounded("remove", move || segment::remove_if_stale(&n).map(drop)));
        assert!(std::fs::symlink_metadata(format!("/dev/shm{}", p.name)).is_ok(), "nothing removed it");
    }
    let t = Instant::now();
    let listed = bounded("list", segment::list).unwrap();
    assert!(t.elapsed() < PROMPT);
    assert!(!listed.iter().any(|s| planted.iter().any(|p| p.name == s.name)), "special files are not listed");
}

#[test]
fn an_empty_file_is_named_as_such_after_a_short_wait() {
    let name = unique_name("empty");
    let path = format!("/dev/shm{name}");
    std::fs::write(&path, b"").unwrap();
    let long = SegmentOptions::new().open_timeout(Duration::from_secs(30));
    let t = Instant::now();
    let (n, o) = (name.clone(), long.clone());
    let e = bounded("open of an empty file", move || o.open(&n).unwrap_err());
    assert!(t.elapsed() < Duration::from_secs(2), "a short wait, not the whole open timeout: {:?}", t.elapsed());
    assert!(matches!(e, SegmentError::EmptyFile { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("empty file, not a shmkit segment (or its creator has not sized it yet)"), "{msg}");
    let n = name.clone();
    let e = bounded("open_raw of an empty file", move || Segment::open_raw(&n).unwrap_err());
    assert!(matches!(e, SegmentError::EmptyFile { .. }), "{e:?}");
    // A creator that sizes the file during the short wait is waited for.
    std::fs::remove_file(&path).unwrap();
    let f = std::fs::File::create(&path).unwrap();
    let sizer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        f.set_len(100).unwrap();
    });
    let n = name.clone();
    let raw = bounded("open_raw of a file being sized", move || Segment::open_raw(&n).map(|s| s.len()));
    sizer.join().unwrap();
    assert_eq!(raw.unwrap(), 100);
    std::fs::remove_file(&path).unwrap();
}
