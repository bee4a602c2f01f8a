//! The 128-byte header at the start of every shmkit segment.
//!
//! ```text
//! offset size field
//!      0    8 magic            b"SHMKIT\0\x1a" (written atomically first)
//!      8    4 version          FORMAT_VERSION
//!     12    4 state            0 = initialising, READY = published (Release / Acquire)
//!     16    4 kind             Kind code
//!     20    4 elem_align       alignment of the element type
//!     24    8 elem_size        size of the element type
//!     32    8 payload_offset   where the payload starts (control block sits between)
//!     40    8 payload_len      payload bytes
//!     48    8 elem_count       number of elements (payload_len / elem_size)
//!     56    4 creator_pid
//!     60    4 flags            reserved, 0
//!     64    8 created_unix_ns
//!     72   56 elem_name        UTF-8 type name, NUL padded
//! ```
//!
//! All integers are native-endian (segments never leave the machine). The creator writes
//! every field, initialises the control block and payload, then stores `READY` into
//! `state` with Release; an opener reads `state` with Acquire before it reads anything
//! else, and validates every field before it trusts one.
//!
//! Openers look at `magic` and `state` while a creator is still writing, so in memory the
//! header is only ever accessed word by word with atomics of each field's width
//! ([`store`], [`publish`], [`peek`], [`load`]), never with a plain copy.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use bytemuck::{Pod, Zeroable};

/// The eight bytes every shmkit segment starts with.
pub const MAGIC: [u8; 8] = *b"SHMKIT\0\x1a";
/// The header format this build writes (and the newest it reads). Version 3 added the
/// shape record of arrays (`shared::shape`); the 128-byte header itself is unchanged.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest header format this build reads: version 2 arrays open as one-dimensional.
pub const OLDEST_FORMAT_VERSION: u32 = 2;
/// Size of the header in bytes.
pub const HEADER_SIZE: usize = 128;
/// `state` value of a published segment.
pub const READY: u32 = 0x5245_4459; // "READY" in spirit: any other non-zero value is corrupt
/// Longest element type name the header can hold.
pub const MAX_TYPE_NAME: usize = 56;

/// The raw header, exactly as stored.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct RawHeader {
    /// Must equal [`MAGIC`].
    pub magic: [u8; 8],
    /// Format version.
    pub version: u32,
    /// 0 while initialising, [`READY`] once published.
    pub state: u32,
    /// [`Kind`] code.
    pub kind: u32,
    /// Element alignment.
    pub elem_align: u32,
    /// Element size.
    pub elem_size: u64,
    /// Offset of the payload.
    pub payload_offset: u64,
    /// Payload bytes.
    pub payload_len: u64,
    /// Number of elements.
    pub elem_count: u64,
    /// Pid of the creator.
    pub creator_pid: u32,
    /// Reserved, 0.
    pub flags: u32,
    /// Creation time (ns since the Unix epoch).
    pub created_unix_ns: u64,
    /// Element type name, NUL padded.
    pub elem_name: [u8; MAX_TYPE_NAME],
}

const _: () = assert!(std::mem::size_of::<RawHeader>() == HEADER_SIZE);

/// Every word of the header as `(offset, width)`, in order: each field at its own width,
/// and the type name as seven 8-byte words.
const WORDS: [(usize, usize); 19] = [
    (0, 8),
    (8, 4),
    (12, 4),
    (16, 4),
    (20, 4),
    (24, 8),
    (32, 8),
    (40, 8),
    (48, 8),
    (56, 4),
    (60, 4),
    (64, 8),
    (72, 8),
    (80, 8),
    (88, 8),
    (96, 8),
    (104, 8),
    (112, 8),
    (120, 8),
];

/// Offset of the `state` word.
const STATE_AT: usize = 12;

const _: () = {
    // The words tile the header exactly, each aligned to its width.
    let mut at = 0;
    let mut i = 0;
    while i < WORDS.len() {
        assert!(WORDS[i].0 == at && at % WORDS[i].1 == 0 && (WORDS[i].1 == 4 || WORDS[i].1 == 8));
        at += WORDS[i].1;
        i += 1;
    }
    assert!(at == HEADER_SIZE && WORDS[2].0 == STATE_AT);
};

/// Write `raw` into the header at `base`, word by word with Relaxed atomic stores (magic
/// first). `raw.state` should be 0: [`publish`] makes the segment visible.
///
/// # Safety
///
/// `base` must be valid for writes of [`HEADER_SIZE`] bytes and 8-aligned; every other
/// access to these bytes must be atomic ([`peek`], [`load`]) or through system calls.
pub unsafe fn store(base: *mut u8, raw: &RawHeader) {
    let bytes = bytemuck::bytes_of(raw);
    for (at, width) in WORDS {
        let mut w = [0u8; 8];
        w[..width].copy_from_slice(&bytes[at..at + width]);
        // SAFETY: `at + width <= HEADER_SIZE` and `at` is a multiple of `width` (checked at
        // compile time above) in an 8-aligned region valid for writes, per the contract.
        unsafe {
            if width == 8 {
                AtomicU64::from_ptr(base.add(at).cast()).store(u64::from_ne_bytes(w), Ordering::Relaxed);
            } else {
                let v = u32::from_ne_bytes([w[0], w[1], w[2], w[3]]);
                AtomicU32::from_ptr(base.add(at).cast()).store(v, Ordering::Relaxed);
            }
        }
    }
}

/// Publish the header at `base`: store [`READY`] into `state` with Release.
///
/// # Safety
///
/// As for [`store`].
pub unsafe fn publish(base: *mut u8) {
    // SAFETY: `state` is the aligned 4-byte word at STATE_AT inside the header, per the contract.
    unsafe { AtomicU32::from_ptr(base.add(STATE_AT).cast()) }.store(READY, Ordering::Release);
}

/// `(magic, state)` of the header at `base`; `state` read with Acquire, so once it is
/// [`READY`] a following [`load`] sees everything the creator wrote before publishing.
///
/// # Safety
///
/// `base` must be valid for reads of [`HEADER_SIZE`] bytes and 8-aligned; every other
/// access to these bytes must be atomic or through system calls.
pub unsafe fn peek(base: *const u8) -> (u64, u32) {
    // SAFETY: the aligned words at offsets 0 and STATE_AT lie inside the header, per the contract.
    unsafe {
        let magic = AtomicU64::from_ptr(base.cast_mut().cast()).load(Ordering::Relaxed);
        let state = AtomicU32::from_ptr(base.add(STATE_AT).cast_mut().cast()).load(Ordering::Acquire);
        (magic, state)
    }
}

/// A snapshot of the header at `base`, word by word with Relaxed atomic loads: a copy to
/// [`validate`], never trusted in place.
///
/// # Safety
///
/// As for [`peek`].
pub unsafe fn load(base: *const u8) -> RawHeader {
    let mut raw = RawHeader::zeroed();
    let bytes = bytemuck::bytes_of_mut(&mut raw);
    for (at, width) in WORDS {
        // SAFETY: as in `store`: aligned words inside the header, per the contract.
        let w = unsafe {
            let p = base.add(at).cast_mut();
            if width == 8 {
                AtomicU64::from_ptr(p.cast()).load(Ordering::Relaxed).to_ne_bytes()
            } else {
                let v = AtomicU32::from_ptr(p.cast()).load(Ordering::Relaxed).to_ne_bytes();
                [v[0], v[1], v[2], v[3], 0, 0, 0, 0]
            }
        };
        bytes[at..at + width].copy_from_slice(&w[..width]);
    }
    raw
}

/// What a segment holds.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Plain bytes ([`Segment::create`](crate::Segment::create)).
    Bytes,
    /// A [`SharedValue`](crate::SharedValue).
    Value,
    /// A [`SharedArray`](crate::SharedArray).
    Array,
    /// A [`SharedAtomic`](crate::SharedAtomic).
    Atomic,
    /// A queue (reserved code).
    Queue,
    /// A shared dictionary (reserved code).
    Dict,
    /// A shared list (reserved code).
    List,
    /// A user-defined `#[repr(C)]` object (reserved code).
    Object,
}

impl Kind {
    /// The code stored in the header.
    pub const fn code(self) -> u32 {
        match self {
            Kind::Bytes => 1,
            Kind::Value => 2,
            Kind::Array => 3,
            Kind::Atomic => 4,
            Kind::Queue => 5,
            Kind::Dict => 6,
            Kind::List => 7,
            Kind::Object => 8,
        }
    }

    /// The kind for a stored code, `None` for codes this build does not know.
    pub const fn from_code(code: u32) -> Option<Kind> {
        Some(match code {
            1 => Kind::Bytes,
            2 => Kind::Value,
            3 => Kind::Array,
            4 => Kind::Atomic,
            5 => Kind::Queue,
            6 => Kind::Dict,
            7 => Kind::List,
            8 => Kind::Object,
            _ => return None,
        })
    }

    /// A short lower-case name (`"array"`), as `shmkit ls` prints it.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Bytes => "bytes",
            Kind::Value => "value",
            Kind::Array => "array",
            Kind::Atomic => "atomic",
            Kind::Queue => "queue",
            Kind::Dict => "dict",
            Kind::List => "list",
            Kind::Object => "object",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The element type fingerprint stored in a header: size, alignment and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TypeInfo {
    /// `size_of::<T>()`.
    pub size: u64,
    /// `align_of::<T>()`.
    pub align: u32,
    /// The element's stable name (see [`Element`](crate::Element)).
    pub name: String,
}

impl std::fmt::Display for TypeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (size {}, align {})", self.name, self.size, self.align)
    }
}

/// A validated header, as read from a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderInfo {
    /// Format version.
    pub version: u32,
    /// What the segment holds.
    pub kind: Kind,
    /// Element type fingerprint.
    pub elem: TypeInfo,
    /// Offset of the payload from the start of the segment.
    pub payload_offset: u64,
    /// Payload length in bytes.
    pub payload_len: u64,
    /// Number of elements.
    pub elem_count: u64,
    /// Pid of the creating process (informational only: pids are reused).
    pub creator_pid: u32,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_unix_ns: u64,
}

impl HeaderInfo {
    /// Total segment size the header implies.
    pub fn total_len(&self) -> u64 {
        self.payload_offset + self.payload_len
    }
}

/// Why a header was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderProblem {
    /// The magic bytes are not shmkit's.
    NotShmkit,
    /// The creator has not published it yet (state 0).
    NotReady,
    /// A newer (or unknown) format version.
    Version(u32),
    /// A kind code this build does not know.
    UnknownKind(u32),
    /// The file is shorter than the header says.
    Truncated {
        /// Bytes the header implies.
        expected: u64,
    },
    /// Fields that contradict each other.
    Corrupt(String),
}

/// Validate raw header bytes against a file of `file_len` bytes.
///
/// Pure function of its inputs: never panics, whatever the bytes.
pub fn validate(bytes: &[u8], file_len: u64) -> Result<HeaderInfo, HeaderProblem> {
    if bytes.len() < HEADER_SIZE {
        return Err(HeaderProblem::Corrupt(format!(
            "{} bytes is shorter than the {HEADER_SIZE}-byte header",
            bytes.len()
        )));
    }
    let raw: RawHeader = bytemuck::pod_read_unaligned(&bytes[..HEADER_SIZE]);
    if raw.magic != MAGIC {
        return Err(HeaderProblem::NotShmkit);
    }
    if raw.state == 0 {
        return Err(HeaderProblem::NotReady);
    }
    if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&raw.version) {
        return Err(HeaderProblem::Version(raw.version));
    }
    if raw.state != READY {
        return Err(HeaderProblem::Corrupt(format!("state word {:#x} is neither 0 nor ready", raw.state)));
    }
    let kind = Kind::from_code(raw.kind).ok_or(HeaderProblem::UnknownKind(raw.kind))?;
    let corrupt = |m: String| Err(HeaderProblem::Corrupt(m));
    if raw.elem_size == 0 {
        return corrupt("element size is 0".into());
    }
    if raw.elem_count == 0 {
        return corrupt("element count is 0 (segments hold at least one element)".into());
    }
    if raw.elem_align == 0 || !raw.elem_align.is_power_of_two() || raw.elem_align > 4096 {
        return corrupt(format!("element alignment {} is not a power of two up to 4096", raw.elem_align));
    }
    if !raw.elem_size.is_multiple_of(u64::from(raw.elem_align)) {
        return corrupt(format!(
            "element size {} is not a multiple of its alignment {}",
            raw.elem_size, raw.elem_align
        ));
    }
    if raw.payload_offset < HEADER_SIZE as u64 || !raw.payload_offset.is_multiple_of(u64::from(raw.elem_align)) {
        return corrupt(format!("payload offset {} is misplaced", raw.payload_offset));
    }
    match raw.elem_size.checked_mul(raw.elem_count) {
        Some(n) if n == raw.payload_len => {}
        _ => {
            return corrupt(format!(
                "payload length {} is not {} elements of {} bytes",
                raw.payload_len, raw.elem_count, raw.elem_size
            ));
        }
    }
    let Some(total) = raw.payload_offset.checked_add(raw.payload_len) else {
        return corrupt("payload end overflows".into());
    };
    if total > file_len {
        return Err(HeaderProblem::Truncated { expected: total });
    }
    if total > super::MAX_SEGMENT_LEN {
        return corrupt(format!("payload end {total} exceeds the address space"));
    }
    let name_len = raw.elem_name.iter().position(|&b| b == 0).unwrap_or(MAX_TYPE_NAME);
    let Ok(name) = std::str::from_utf8(&raw.elem_name[..name_len]) else {
        return corrupt("element type name is not UTF-8".into());
    };
    if raw.elem_name[name_len..].iter().any(|&b| b != 0) {
        return corrupt("element type name has bytes after its terminator".into());
    }
    if name.chars().any(char::is_control) {
        // Never echo it: the bytes could be terminal escape sequences.
        return corrupt("element type name holds control characters".into());
    }
    Ok(HeaderInfo {
        version: raw.version,
        kind,
        elem: TypeInfo { size: raw.elem_size, align: raw.elem_align, name: name.to_owned() },
        payload_offset: raw.payload_offset,
        payload_len: raw.payload_len,
        elem_count: raw.elem_count,
        creator_pid: raw.creator_pid,
        created_unix_ns: raw.created_unix_ns,
    })
}

/// Build the header a creator writes (with `state` still 0). The version written is
/// `info.version` (a test writes an old format with it; creators use [`FORMAT_VERSION`]).
pub fn build(info: &HeaderInfo) -> RawHeader {
    let mut elem_name = [0u8; MAX_TYPE_NAME];
    let n = info.elem.name.len().min(MAX_TYPE_NAME);
    elem_name[..n].copy_from_slice(&info.elem.name.as_bytes()[..n]);
    RawHeader {
        magic: MAGIC,
        version: info.version,
        state: 0,
        kind: info.kind.code(),
        elem_align: info.elem.align,
        elem_size: info.elem.size,
        payload_offset: info.payload_offset,
        payload_len: info.payload_len,
        elem_count: info.elem_count,
        creator_pid: info.creator_pid,
        flags: 0,
        created_unix_ns: info.created_unix_ns,
        elem_name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HeaderInfo {
        HeaderInfo {
            version: FORMAT_VERSION,
            kind: Kind::Array,
            elem: TypeInfo { size: 8, align: 8, name: "f64".into() },
            payload_offset: 4096,
            payload_len: 80,
            elem_count: 10,
            creator_pid: 1,
            created_unix_ns: 2,
        }
    }

    fn published(info: &HeaderInfo) -> Vec<u8> {
        let mut raw = build(info);
        raw.state = READY;
        bytemuck::bytes_of(&raw).to_vec()
    }

    /// Openers peek at the header while its creator writes it: run under Miri
    /// (`cargo +nightly miri test --lib segment::header`), a plain store over the words they
    /// load atomically is reported as a data race.
    #[test]
    fn concurrent_openers_see_unpublished_or_the_whole_header() {
        let info = sample();
        let raw = build(&info);
        let buf: Box<[AtomicU64; HEADER_SIZE / 8]> = Box::new(std::array::from_fn(|_| AtomicU64::new(0)));
        let base = buf.as_ptr() as usize;
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: `buf` is HEADER_SIZE bytes, 8-aligned, and only accessed atomically.
                unsafe {
                    store(base as *mut u8, &raw);
                    publish(base as *mut u8);
                }
            });
            loop {
                // SAFETY: as above.
                let (magic, state) = unsafe { peek(base as *const u8) };
                if state == 0 {
                    assert!(magic == 0 || magic == u64::from_ne_bytes(MAGIC), "torn magic {magic:#x}");
                    std::thread::yield_now();
                    continue;
                }
                // SAFETY: as above.
                let seen = unsafe { load(base as *const u8) };
                assert_eq!(validate(bytemuck::bytes_of(&seen), 4176), Ok(info));
                break;
            }
        });
    }

    #[test]
    fn round_trip() {
        let info = sample();
        assert_eq!(validate(&published(&info), 4176), Ok(info));
    }

    #[test]
    fn every_problem_is_reported() {
        let info = sample();
        let good = published(&info);
        assert_eq!(validate(&good, 4175), Err(HeaderProblem::Truncated { expected: 4176 }));
        let mut b = good.clone();
        b[0] = b'X';
        assert_eq!(validate(&b, 4176), Err(HeaderProblem::NotShmkit));
        let mut b = good.clone();
        b[8] = 1;
        assert_eq!(validate(&b, 4176), Err(HeaderProblem::Version(1)));
        b[8] = FORMAT_VERSION as u8 + 1;
        assert_eq!(validate(&b, 4176), Err(HeaderProblem::Version(FORMAT_VERSION + 1)));
        b[8] = OLDEST_FORMAT_VERSION as u8;
        assert!(validate(&b, 4176).is_ok(), "version 2 segments still open");
        let mut b = good.clone();
        b[12..16].copy_from_slice(&0u32.to_ne_bytes());
        assert_eq!(validate(&b, 4176), Err(HeaderProblem::NotReady));
        let mut b = good.clone();
        b[16..20].copy_from_slice(&99u32.to_ne_bytes());
        assert_eq!(validate(&b, 4176), Err(HeaderProblem::UnknownKind(99)));
        let mut b = good.clone();
        b[20..24].copy_from_slice(&3u32.to_ne_bytes());
        assert!(matches!(validate(&b, 4176), Err(HeaderProblem::Corrupt(_))));
        let mut b = good.clone();
        b[40..48].copy_from_slice(&u64::MAX.to_ne_bytes());
        assert!(matches!(validate(&b, u64::MAX), Err(HeaderProblem::Corrupt(_))));
        assert!(matches!(validate(&[0u8; 10], 10), Err(HeaderProblem::Corrupt(_))));
        let mut b = good;
        b[72..76].copy_from_slice(b"u\x1b[m");
        assert!(matches!(validate(&b, 4176), Err(HeaderProblem::Corrupt(m)) if m.contains("control")));
        let mut empty = sample();
        (empty.elem_count, empty.payload_len) = (0, 0);
        assert!(
            matches!(validate(&published(&empty), 4096), Err(HeaderProblem::Corrupt(m)) if m.contains("count is 0"))
        );
    }
}
