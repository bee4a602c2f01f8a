//! Segment protocol: create/open, names, reservation, sealing, unlink policy, bad input.

mod common;
#[path = "common/hostile.rs"]
mod hostile;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::{exists, unique_name};
use shmkit::segment::header::{self, HEADER_SIZE, Kind, RawHeader};
use shmkit::{Segment, SegmentError, SegmentOptions, SharedArray, SharedValue};

fn fstat(seg: &Segment) -> libc::stat {
    // SAFETY: zeroed stat is valid; fstat writes it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and buffer.
    assert_eq!(unsafe { libc::fstat(seg.fd().as_raw_fd(), &mut st) }, 0);
    st
}

/// Write a file into /dev/shm by hand; removed on drop.
struct Foreign(String);

impl Foreign {
    fn new(tag: &str, bytes: &[u8]) -> Self {
        let name = unique_name(tag);
        let mut f = std::fs::File::create(format!("/dev/shm{name}")).unwrap();
        f.write_all(bytes).unwrap();
        Foreign(name)
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/dev/shm{}", self.0));
    }
}

fn valid_header(kind: Kind, elem: &str, size: u64, count: u64) -> Vec<u8> {
    let info = header::HeaderInfo {
        version: header::FORMAT_VERSION,
        kind,
        elem: header::TypeInfo { size, align: size as u32, name: elem.into() },
        payload_offset: 4096,
        payload_len: size * count,
        elem_count: count,
        creator_pid: 1,
        created_unix_ns: 0,
    };
    let mut raw: RawHeader = header::build(&info);
    raw.state = header::READY;
    let mut v = bytemuck::bytes_of(&raw).to_vec();
    v.resize(4096 + (size * count) as usize, 0);
    v
}

#[test]
fn create_open_and_default_names() {
    let seg = Segment::create(None, 1000).unwrap();
    let name = seg.name().unwrap().to_owned();
    assert!(name.starts_with("/shmkit-") && name.len() == "/shmkit-".len() + 32, "{name}");
    assert!(name["/shmkit-".len()..].chars().all(|c| c.is_ascii_hexdigit()));
    assert!(exists(&name));
    let peer = Segment::open(&name).unwrap();
    assert_eq!(peer.len(), 1000);
    // SAFETY: single-threaded test, nobody else writes.
    unsafe { seg.as_mut_slice()[999] = 7 };
    // SAFETY: as above.
    assert_eq!(unsafe { peer.as_slice()[999] }, 7);
    let h = peer.header().unwrap();
    assert_eq!((h.kind, h.creator_pid), (Kind::Bytes, std::process::id()));
    assert!(!peer.unlinks_on_drop() && seg.unlinks_on_drop());
    drop(peer);
    drop(seg);
    assert!(!exists(&name), "the creator unlinks on drop");
}

#[test]
fn mode_is_0600_unless_asked() {
    let seg = Segment::create(None, 10).unwrap();
    assert_eq!(fstat(&seg).st_mode & 0o777, 0o600);
    let seg = SegmentOptions::new().mode(0o640).create(None, 10).unwrap();
    assert_eq!(fstat(&seg).st_mode & 0o777, 0o640);
}

#[test]
fn reservation_backs_the_memory_and_can_be_skipped() {
    let len = 8 << 20;
    let reserved = Segment::create(None, len).unwrap();
    assert!(fstat(&reserved).st_blocks as usize * 512 >= len, "posix_fallocate reserved the pages");
    let sparse = SegmentOptions::new().reserve(false).create(None, len).unwrap();
    assert!((fstat(&sparse).st_blocks as usize * 512) < len / 2, "sparse segments are not backed");
}

#[test]
fn existing_names_are_never_reused() {
    let name = unique_name("excl");
    let _a = Segment::create(Some(&name), 10).unwrap();
    assert!(matches!(Segment::create(Some(&name), 10), Err(SegmentError::AlreadyExists { .. })));
    assert!(matches!(Segment::create_raw(Some(&name), 10), Err(SegmentError::AlreadyExists { .. })));
}

#[test]
fn bad_names_and_lengths_are_typed_errors() {
    for bad in ["", "/", "a/b", "/../x", ".x", "with space", &"n".repeat(300)] {
        let e = Segment::create(Some(bad), 10).unwrap_err();
        assert!(matches!(e, SegmentError::InvalidName { .. }), "{bad:?}: {e}");
        assert!(matches!(Segment::open(bad), Err(SegmentError::InvalidName { .. })));
    }
    assert!(matches!(Segment::create(None, 0), Err(SegmentError::ZeroLength)));
    assert!(matches!(Segment::anonymous(0), Err(SegmentError::ZeroLength)));
    assert!(matches!(SharedArray::<f64>::create(None, 0), Err(SegmentError::ZeroLength)));
    let e = Segment::create(None, usize::MAX).unwrap_err();
    assert!(matches!(e, SegmentError::TooLarge { .. }), "{e}");
    let e = Segment::create(None, 1 << 50).unwrap_err();
    assert!(matches!(e, SegmentError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("/dev/shm"), "{e}");
    let sparse = SegmentOptions::new().reserve(false);
    for len in [usize::MAX, isize::MAX as usize, isize::MAX as usize + 1] {
        let e = sparse.create_raw(None, len).unwrap_err();
        assert!(matches!(e, SegmentError::TooLarge { .. }), "raw {len}: {e}");
        let e = sparse.anonymous(len).unwrap_err();
        assert!(matches!(e, SegmentError::TooLarge { .. }), "anonymous {len}: {e}");
    }
    let e = SharedArray::<u64>::create(None, usize::MAX / 4).unwrap_err();
    assert!(matches!(e, SegmentError::TooLarge { .. }), "{e}");
    assert!(matches!(Segment::open(&unique_name("missing")), Err(SegmentError::NotFound { .. })));
}

#[test]
fn anonymous_segments_are_sealed() {
    let seg = Segment::anonymous(4096).unwrap();
    assert!(seg.name().is_none() && seg.is_sealed());
    // SAFETY: plain syscalls on our own descriptor.
    unsafe {
        assert_eq!(libc::ftruncate(seg.fd().as_raw_fd(), 0), -1, "shrinking is sealed");
        assert_eq!(libc::ftruncate(seg.fd().as_raw_fd(), 1 << 20), -1, "growing is sealed");
    }
}

#[test]
fn persist_and_explicit_unlink() {
    let mut seg = Segment::create(None, 10).unwrap();
    let name = seg.name().unwrap().to_owned();
    seg.persist();
    drop(seg);
    assert!(exists(&name));
    let again = Segment::open(&name).unwrap();
    Segment::unlink(&name).unwrap();
    assert!(!exists(&name));
    assert_eq!(again.len(), 10, "mappings outlive the name");
    assert!(matches!(Segment::unlink(&name), Err(SegmentError::NotFound { .. })));
}

#[test]
fn a_forked_child_never_unlinks_its_parents_segment() {
    let _serial = common::serial();
    let seg = Segment::create(None, 64).unwrap();
    let name = seg.name().unwrap().to_owned();
    let pid = common::fork_child(|| {
        // The child's copy of the creating handle: dropping it must not unlink.
        // SAFETY: in the child, `seg` is a private copy that nothing else will use or drop.
        let copy = unsafe { std::ptr::read(&seg) };
        drop(copy);
        0
    });
    assert_eq!(common::wait_pid(pid, Duration::from_secs(10)), common::Exit::Code(0));
    assert!(exists(&name), "the child dropped its copy without unlinking");
    drop(seg);
    assert!(!exists(&name));
}

#[test]
fn raw_segments_have_no_header() {
    let seg = Segment::create_raw(None, 333).unwrap();
    let name = seg.name().unwrap().to_owned();
    assert!(seg.header().is_none());
    assert_eq!(std::fs::metadata(format!("/dev/shm{name}")).unwrap().len(), 333, "file is exactly len");
    let peer = Segment::open_raw(&name).unwrap();
    assert_eq!(peer.len(), 333);
    // All-zero bytes look like a shmkit segment still being initialised: a bounded wait.
    let quick = SegmentOptions::new().open_timeout(Duration::from_millis(50));
    assert!(matches!(quick.open(&name), Err(SegmentError::InitTimeout { .. })));
    drop(peer);
    drop(seg);
    assert!(!exists(&name));
}

#[test]
fn foreign_files_are_not_shmkit() {
    let f = Foreign::new("foreign", &[0xAB; 4096]);
    let e = Segment::open(&f.0).unwrap_err();
    assert!(matches!(e, SegmentError::NotShmkit { .. }), "{e}");
    let t = Instant::now();
    let f = Foreign::new("foreign-short", b"hello");
    let e = Segment::open(&f.0).unwrap_err();
    assert!(matches!(e, SegmentError::NotShmkit { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_secs(1), "no wait for a file no creator is sizing");
    assert!(e.to_string().contains("raw mode"), "message says what to do: {e}");
    let f = Foreign::new("short-magic", &header::MAGIC);
    assert!(matches!(Segment::open(&f.0), Err(SegmentError::Truncated { size: 8, expected: 128, .. })));
    let f = Foreign::new("empty", b"");
    let opts = SegmentOptions::new().open_timeout(Duration::from_secs(20));
    let t = Instant::now();
    let e = opts.open(&f.0).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2), "a short wait for a creator's ftruncate, not the open timeout");
    assert!(matches!(e, SegmentError::EmptyFile { .. }), "an empty file is named as such: {e}");
    assert!(e.to_string().contains("shmkit rm --force"), "message says what to do: {e}");
}

/// Every header field at 0, its maximum and one off, every cut of the file: each open path
/// returns (promptly) a typed error or a header that `validate` accepts, never panics.
#[test]
fn hostile_header_fields_are_typed_errors_through_every_open_path() {
    let quick = SegmentOptions::new().open_timeout(Duration::from_millis(50));
    for (label, bytes) in hostile::cases() {
        let f = Foreign::new("hostile", &bytes);
        let verdict = header::validate(&bytes, bytes.len() as u64);
        let t = Instant::now();
        match quick.open_any(&f.0) {
            Ok(seg) => assert_eq!(seg.header(), verdict.as_ref().ok(), "{label}"),
            Err(e) => {
                assert!(verdict.is_err(), "{label}: open_any refused a valid header: {e}");
                assert!(!matches!(e, SegmentError::Io { .. }), "{label}: a typed error, not {e:?}");
            }
        }
        match quick.open(&f.0) {
            Ok(seg) => assert_eq!(seg.header().map(|h| h.kind), Some(Kind::Bytes), "{label}"),
            Err(e) => assert!(!matches!(e, SegmentError::Io { .. }), "{label}: a typed error, not {e:?}"),
        }
        let e = SharedArray::<f64>::open_with(&quick, &f.0).unwrap_err();
        assert!(!matches!(e, SegmentError::Io { .. }), "{label}: {e:?}");
        let raw = Segment::open_raw(&f.0).unwrap();
        assert_eq!(raw.len(), bytes.len(), "{label}: raw mode maps the whole file");
        let status = shmkit::segment::status(&f.0).unwrap();
        assert_eq!(status.header.as_ref(), verdict.as_ref().ok(), "{label}");
        assert_eq!(status.size, bytes.len() as u64);
        assert!(t.elapsed() < Duration::from_secs(2), "{label}: took {:?}", t.elapsed());
    }
}

#[test]
fn unpublished_segments_time_out_with_a_typed_error() {
    let f = Foreign::new("initialising", &[0u8; 4096]);
    let opts = SegmentOptions::new().open_timeout(Duration::from_millis(200));
    let t = Instant::now();
    let e = opts.open(&f.0).unwrap_err();
    assert!(matches!(e, SegmentError::InitTimeout { .. }), "{e}");
    assert!(t.elapsed() >= Duration::from_millis(200) && t.elapsed() < Duration::from_secs(3));
}

#[test]
fn a_creator_publishing_late_is_waited_for() {
    let mut bytes_kind = valid_header(Kind::Bytes, "u8", 1, 64);
    bytes_kind[12..16].copy_from_slice(&0u32.to_ne_bytes());
    let f = Foreign::new("late", &bytes_kind);
    let path = format!("/dev/shm{}", f.0);
    let publisher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        use std::os::unix::fs::FileExt;
        file.write_at(&header::READY.to_ne_bytes(), 12).unwrap();
    });
    let seg = Segment::open(&f.0).unwrap();
    publisher.join().unwrap();
    assert_eq!(seg.len(), 64);
}

#[test]
fn header_mismatches_are_typed_errors() {
    // Truncated: header promises more than the file holds.
    let mut b = valid_header(Kind::Bytes, "u8", 1, 100);
    b.truncate(4096 + 50);
    let f = Foreign::new("trunc", &b);
    assert!(matches!(Segment::open(&f.0), Err(SegmentError::Truncated { size: 4146, expected: 4196, .. })));
    // Newer format.
    let mut b = valid_header(Kind::Bytes, "u8", 1, 10);
    b[8..12].copy_from_slice(&9u32.to_ne_bytes());
    let f = Foreign::new("newer", &b);
    assert!(matches!(Segment::open(&f.0), Err(SegmentError::UnsupportedVersion { found: 9, .. })));
    // Unknown kind.
    let mut b = valid_header(Kind::Bytes, "u8", 1, 10);
    b[16..20].copy_from_slice(&77u32.to_ne_bytes());
    let f = Foreign::new("kind", &b);
    assert!(matches!(Segment::open(&f.0), Err(SegmentError::UnknownKind { code: 77, .. })));
    // Garbage fields behind a valid magic.
    let mut b = valid_header(Kind::Bytes, "u8", 1, 10);
    b[24..32].copy_from_slice(&0u64.to_ne_bytes());
    let f = Foreign::new("garbage", &b);
    assert!(matches!(Segment::open(&f.0), Err(SegmentError::Corrupt { .. })));
    // Corrupt state word.
    let mut b = valid_header(Kind::Bytes, "u8", 1, 10);
    b[12..16].copy_from_slice(&0xdeadu32.to_ne_bytes());
    let f = Foreign::new("state", &b);
    assert!(matches!(Segment::open(&f.0), Err(SegmentError::Corrupt { .. })));
    // An array header with no claim table behind it.
    let f = Foreign::new("notable", &valid_header(Kind::Array, "f64", 8, 10));
    let e = SharedArray::<f64>::open(&f.0).unwrap_err();
    assert!(matches!(e, SegmentError::Corrupt { .. }), "{e}");
}

#[test]
fn wrong_type_or_kind_is_refused() {
    let a = SharedArray::<f64>::create(None, 16).unwrap();
    let name = a.name().unwrap();
    assert!(SharedArray::<f64>::open(name).is_ok());
    let e = SharedArray::<f32>::open(name).unwrap_err();
    assert!(matches!(e, SegmentError::TypeMismatch { .. }), "{e}");
    assert!(e.to_string().contains("f64") && e.to_string().contains("f32"), "{e}");
    assert!(matches!(SharedArray::<u64>::open(name), Err(SegmentError::TypeMismatch { .. })));
    let e = SharedValue::<f64>::open(name).unwrap_err();
    assert!(matches!(e, SegmentError::KindMismatch { expected: Kind::Value, .. }), "{e}");
    assert!(matches!(Segment::open(name), Err(SegmentError::KindMismatch { .. })));
    let h = a.segment().header().unwrap();
    assert_eq!((h.kind, h.elem.name.as_str(), h.elem_count), (Kind::Array, "f64", 16));
    assert!(h.payload_offset as usize >= HEADER_SIZE);
}
