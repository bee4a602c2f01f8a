//! The checks the fuzz targets run, shared with `tests/fuzz_corpus.rs` (which includes this
//! file with `#[path]`), so the committed corpus is replayed by plain `cargo test`.
//!
//! Every function here must return normally for *any* input: a panic, an abort or a signal
//! (SIGBUS, SIGSEGV) is a bug in shmkit, or a broken invariant.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shmkit::segment::header::{
    self, FORMAT_VERSION, HEADER_SIZE, HeaderProblem, Kind, MAGIC, OLDEST_FORMAT_VERSION, READY,
};
use shmkit::{Segment, SegmentOptions, SharedArray, SharedAtomic, SharedValue};

/// Split a fuzz input into `(file_len, header bytes)`: the first 8 bytes (little-endian,
/// zero-padded when short) give the file length, the rest are the header bytes.
pub fn split_header_input(data: &[u8]) -> (u64, &[u8]) {
    let n = data.len().min(8);
    let mut len = [0u8; 8];
    len[..n].copy_from_slice(&data[..n]);
    (u64::from_le_bytes(len), &data[n..])
}

/// Build a `header` fuzz input from a file length and header bytes (the seed format).
pub fn header_input(file_len: u64, bytes: &[u8]) -> Vec<u8> {
    let mut v = file_len.to_le_bytes().to_vec();
    v.extend_from_slice(bytes);
    v
}

/// Target `header`: [`header::validate`] on hostile bytes against several file lengths,
/// with invariants checked on every accepted header.
pub fn check_header(data: &[u8]) {
    let (file_len, bytes) = split_header_input(data);
    for len in [file_len, bytes.len() as u64, u64::MAX, 0] {
        check_validate(bytes, len);
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn check_validate(bytes: &[u8], file_len: u64) {
    let result = header::validate(bytes, file_len);
    // Only the first HEADER_SIZE bytes may matter.
    if bytes.len() >= HEADER_SIZE {
        let mut extended = bytes[..HEADER_SIZE].to_vec();
        extended.extend_from_slice(b"trailing garbage after the header");
        assert_eq!(result, header::validate(&extended, file_len), "bytes after the header changed the verdict");
        assert_eq!(result, header::validate(&bytes[..HEADER_SIZE], file_len), "a longer buffer changed the verdict");
    }
    let info = match result {
        Ok(info) => info,
        Err(HeaderProblem::Truncated { expected }) => {
            assert!(expected > file_len, "truncated, yet {expected} bytes fit a {file_len}-byte file");
            // At exactly the length it asks for, the header is no longer truncated.
            let again = header::validate(bytes, expected);
            assert!(!matches!(again, Err(HeaderProblem::Truncated { .. })), "still truncated at its own length");
            return;
        }
        Err(HeaderProblem::NotShmkit) => {
            assert!(bytes.len() >= HEADER_SIZE && bytes[..8] != MAGIC);
            return;
        }
        Err(HeaderProblem::NotReady) => {
            assert_eq!(u32_at(bytes, 12), 0);
            return;
        }
        Err(HeaderProblem::Version(v)) => {
            assert!(!(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&v));
            return;
        }
        Err(HeaderProblem::UnknownKind(code)) => {
            assert!(Kind::from_code(code).is_none());
            return;
        }
        Err(HeaderProblem::Corrupt(reason)) => {
            assert!(!reason.is_empty());
            return;
        }
    };
    let raw = &bytes[..HEADER_SIZE];
    // Fields read back exactly as stored.
    assert_eq!(raw[..8], MAGIC);
    assert!((OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&info.version));
    assert_eq!(u32_at(raw, 8), info.version);
    assert_eq!(u32_at(raw, 12), READY);
    assert_eq!(info.kind.code(), u32_at(raw, 16));
    assert_eq!(Kind::from_code(info.kind.code()), Some(info.kind));
    assert_eq!(info.elem.align, u32_at(raw, 20));
    assert_eq!(info.elem.size, u64_at(raw, 24));
    assert_eq!(info.payload_offset, u64_at(raw, 32));
    assert_eq!(info.payload_len, u64_at(raw, 40));
    assert_eq!(info.elem_count, u64_at(raw, 48));
    assert_eq!(info.creator_pid, u32_at(raw, 56));
    assert_eq!(info.created_unix_ns, u64_at(raw, 64));
    // The element fingerprint is self-consistent.
    assert!(info.elem.size > 0);
    assert!(info.elem.align.is_power_of_two() && info.elem.align <= 4096);
    assert_eq!(info.elem.size % u64::from(info.elem.align), 0);
    assert!(info.elem.name.len() <= header::MAX_TYPE_NAME);
    assert!(!info.elem.name.contains('\0'));
    assert_eq!(info.elem.name.as_bytes(), &raw[72..72 + info.elem.name.len()]);
    // The payload lies after the header, aligned, inside the file and the address space.
    assert!(info.payload_offset >= HEADER_SIZE as u64);
    assert_eq!(info.payload_offset % u64::from(info.elem.align), 0);
    assert_eq!(info.elem.size.checked_mul(info.elem_count), Some(info.payload_len));
    let end = info.payload_offset.checked_add(info.payload_len).expect("payload end overflows");
    assert_eq!(end, info.total_len());
    assert!(end <= file_len, "payload end {end} is past the {file_len}-byte file");
    assert!(end <= isize::MAX as u64);
    assert!(usize::try_from(end).is_ok());
    // Accepting is monotonic in the file length, and exactly `end` bytes suffice.
    assert_eq!(header::validate(bytes, u64::MAX), Ok(info.clone()));
    assert_eq!(header::validate(bytes, end), Ok(info.clone()));
    if end > 0 {
        assert_eq!(header::validate(bytes, end - 1), Err(HeaderProblem::Truncated { expected: end }));
    }
    // What a creator would write for this info is the same header (only the reserved
    // `flags` word may differ), and it validates to the same info.
    let mut rebuilt = header::build(&info);
    rebuilt.state = READY;
    let rebuilt_bytes = bytemuck::bytes_of(&rebuilt).to_vec();
    let mut expected = raw.to_vec();
    expected[60..64].copy_from_slice(&0u32.to_ne_bytes());
    assert_eq!(rebuilt_bytes, expected, "build() does not reproduce an accepted header");
    assert_eq!(header::validate(&rebuilt_bytes, file_len), Ok(info));
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A uniquely named file in `/dev/shm`, removed on drop. It holds the shared `flock` of
/// the liveness protocol, so a concurrent `shmkit::segment::gc()` (another test, another
/// tool) never removes it from under the check, even when its bytes look like a segment.
pub struct ShmFile {
    /// The POSIX name, with its leading `/`.
    pub name: String,
    _live: Option<std::fs::File>,
}

impl ShmFile {
    /// Create `/dev/shm/fuzz-shmkit-<pid>-<n>` holding exactly `data`. (Not under the
    /// `/shmkit-` prefix, so a concurrent `gc()` never takes it for an abandoned segment.)
    pub fn new(data: &[u8]) -> ShmFile {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("/fuzz-shmkit-{}-{n}", std::process::id());
        let mut file = ShmFile { name, _live: None };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(file.path())
            .expect("create the fuzz file in /dev/shm");
        shmkit::sys::fd::flock(f.as_fd(), shmkit::sys::fd::Flock::Shared).expect("flock the fuzz file");
        f.write_all(data).expect("write the fuzz file");
        file._live = Some(f);
        file
    }

    fn path(&self) -> String {
        format!("/dev/shm{}", self.name)
    }
}

impl Drop for ShmFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path());
    }
}

/// Target `open_file`: the fuzz bytes become a real `/dev/shm` file, which every open path
/// must reject with an error or accept consistently, never panic or fault.
pub fn check_open_file(data: &[u8]) {
    let data = &tame_claim_init(data);
    let file = ShmFile::new(data);
    let name = file.name.as_str();
    let file_len = data.len() as u64;
    let verdict = header::validate(data, file_len);
    // No waiting for a creator that will never come.
    let quick = SegmentOptions::new().open_timeout(Duration::ZERO);

    // Plain byte segment.
    match quick.open(name) {
        Ok(seg) => {
            let info = seg.header().expect("a shmkit segment has a header").clone();
            assert_eq!(Ok(info.clone()), verdict, "open accepted what validate rejects");
            assert_eq!(info.kind, Kind::Bytes);
            assert_eq!(seg.len() as u64, info.payload_len);
            assert!(!seg.unlinks_on_drop(), "an opener must never unlink");
            touch_payload(&seg);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }

    // Typed arrays: the header, then the claim table in the control block.
    match SharedArray::<f64>::open_with(&quick, name) {
        Ok(a) => {
            assert!(verdict.as_ref().is_ok_and(|h| h.kind == Kind::Array && h.elem.name == "f64"));
            assert_eq!(a.len() as u64, verdict.as_ref().map_or(0, |h| h.elem_count));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Ok(a) = SharedArray::<u8>::open_with(&quick, name) {
        assert!(verdict.as_ref().is_ok_and(|h| h.kind == Kind::Array && h.elem.name == "u8"));
        drop(a);
    }

    // The remaining opens use the default 5 s wait for an unpublished segment: only try
    // them when the file cannot look unpublished (full header present, state word set).
    let published_looking = data.len() >= HEADER_SIZE && data[12..16] != [0; 4];
    if published_looking {
        if let Ok(v) = SharedValue::<f64>::open(name) {
            assert!(verdict.as_ref().is_ok_and(|h| h.kind == Kind::Value));
            drop(v);
        }
        if let Ok(v) = SharedAtomic::<u64>::open(name) {
            assert!(verdict.as_ref().is_ok_and(|h| h.kind == Kind::Atomic));
            drop(v);
        }
        if let Ok(fd) = std::fs::OpenOptions::new().read(true).write(true).open(file.path()) {
            match Segment::from_fd(fd.into()) {
                Ok(seg) => {
                    assert_eq!(seg.header().cloned().ok_or(()), verdict.clone().map_err(drop));
                    touch_payload(&seg);
                }
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
    }

    // Raw mode takes any non-empty file, whatever its bytes.
    match Segment::open_raw(name) {
        Ok(seg) => {
            assert_eq!(seg.len() as u64, file_len);
            assert!(seg.header().is_none());
            touch_payload(&seg);
        }
        Err(e) => assert!(file_len == 0, "open_raw refused a {file_len}-byte file: {e}"),
    }
}

/// Offset of the claim table's `init` word: the first word of the control block, right
/// after the header (a layout other languages rely on, see `shared/claims.rs`).
const CLAIM_INIT_AT: usize = HEADER_SIZE;
/// `init` value of an initialised claim table ("CLM1").
const CLAIM_TABLE_READY: u32 = 0x434c_4d31;

/// A claim table whose `init` word is neither 0 (never initialised) nor ready looks like one
/// another process is initialising right now: opening it waits one second before taking
/// over. That path is bounded and tested elsewhere; here it would only slow the fuzzer to a
/// crawl, so such a word becomes 0 or ready (by its low bit), keeping both lazy
/// initialisation and the ready path under fuzz.
fn tame_claim_init(data: &[u8]) -> Vec<u8> {
    let mut data = data.to_vec();
    if let Some(word) = data.get_mut(CLAIM_INIT_AT..CLAIM_INIT_AT + 4) {
        let init = u32::from_ne_bytes([word[0], word[1], word[2], word[3]]);
        if init != 0 && init != CLAIM_TABLE_READY {
            let tamed = if init & 1 == 1 { CLAIM_TABLE_READY } else { 0 };
            word.copy_from_slice(&tamed.to_ne_bytes());
        }
    }
    data
}

/// Read the first and last payload byte: faults (SIGBUS) if the mapping outruns the file.
fn touch_payload(seg: &Segment) {
    if seg.is_empty() {
        return;
    }
    let p = seg.as_ptr();
    // SAFETY: the payload lies inside the live mapping; nobody else writes this private
    // fuzz file, and volatile reads of plain bytes have no other requirement.
    unsafe {
        std::ptr::read_volatile(p);
        std::ptr::read_volatile(p.add(seg.len() - 1));
    }
}
