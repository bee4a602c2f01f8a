//! Errors of the segment layer.

use std::time::Duration;

use super::{FileKind, Kind, TypeInfo};

/// Why a segment could not be created, opened or removed.
///
/// Each variant's message says what to do about it.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// The name breaks the naming rules.
    #[error("invalid segment name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A length of zero was asked for.
    #[error("a segment cannot be empty: ask for at least one byte or element")]
    ZeroLength,
    /// The length cannot be served.
    #[error(
        "segment of {requested} bytes is too large: {where_} holds {capacity} bytes in all \
         (grow /dev/shm, e.g. docker --shm-size, or ask for less)"
    )]
    TooLarge {
        /// Bytes asked for, header included.
        requested: u64,
        /// Capacity of the filesystem (or of the address space).
        capacity: u64,
        /// Where the limit comes from.
        where_: &'static str,
    },
    /// Creating with a name that exists already.
    #[error("segment {name} already exists: open it instead, pick another name, or remove it (shmkit rm)")]
    AlreadyExists {
        /// The name.
        name: String,
    },
    /// Opening a name that does not exist.
    #[error("segment {name} does not exist: check the name, or create it first")]
    NotFound {
        /// The name.
        name: String,
    },
    /// The OS refused access.
    #[error("no permission to open segment {name}: it belongs to another user or mode")]
    PermissionDenied {
        /// The name.
        name: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Reserving the memory failed: `/dev/shm` (or the memfd's limit) is full.
    #[error(
        "not enough shared memory to reserve {len} bytes for {name}: free space in /dev/shm \
         (shmkit gc) or grow it, or create without reservation for sparse use"
    )]
    NoSpace {
        /// The name (empty for anonymous segments).
        name: String,
        /// Bytes asked for.
        len: u64,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Something other than a regular file sits at the name (anyone can plant a FIFO, a
    /// directory, a socket or a symlink in the world-writable `/dev/shm`). Refused before
    /// any blocking operation.
    #[error(
        "{name} is a {what}, not a shared-memory file: shmkit will not open it; \
         find out who put it in /dev/shm (ls -l /dev/shm)"
    )]
    SpecialFile {
        /// The name.
        name: String,
        /// What the file is.
        what: FileKind,
    },
    /// The file is empty (0 bytes), and stayed so for a short wait.
    #[error(
        "{name} is an empty file, not a shmkit segment (or its creator has not sized it yet): \
         retry if a creator is starting, or remove it (shmkit rm --force)"
    )]
    EmptyFile {
        /// The name.
        name: String,
    },
    /// Another process held the file's lock exclusively for the whole open timeout.
    #[error(
        "segment {name} stayed locked exclusively for {waited:?} (a shmkit gc or rm removing it, or \
         another program): retry, or open with a longer timeout"
    )]
    Locked {
        /// The name.
        name: String,
        /// How long `open` waited.
        waited: Duration,
    },
    /// The file does not start with the shmkit magic.
    #[error("{name} is not a shmkit segment (no shmkit header): open it in raw mode if it is plain shared memory")]
    NotShmkit {
        /// The name.
        name: String,
    },
    /// The file is smaller than its header says.
    #[error("segment {name} is truncated: {size} bytes, {expected} expected; remove it (shmkit rm)")]
    Truncated {
        /// The name.
        name: String,
        /// Actual size.
        size: u64,
        /// Size the header or the caller expects.
        expected: u64,
    },
    /// Written by a newer (or unknown) format version.
    #[error("segment {name} uses format version {found}; this shmkit reads versions 2 to {supported}: upgrade shmkit")]
    UnsupportedVersion {
        /// The name.
        name: String,
        /// Version found.
        found: u32,
        /// Newest version this build reads.
        supported: u32,
    },
    /// The segment holds another kind of object.
    #[error("segment {name} holds a {found}, not a {expected}: open it with the matching type")]
    KindMismatch {
        /// The name.
        name: String,
        /// What the caller asked for.
        expected: Kind,
        /// What the segment holds (a name, or an unknown code).
        found: String,
    },
    /// The element type differs.
    #[error("segment {name} holds {found}, not {expected}: open it with the matching element type")]
    TypeMismatch {
        /// The name.
        name: String,
        /// What the caller asked for.
        expected: TypeInfo,
        /// What the segment holds.
        found: TypeInfo,
    },
    /// The segment holds another number of elements than asked for (an `open_or_create`
    /// whose size differs from the creator's).
    #[error(
        "segment {name} holds {found} elements, not {expected}: open it with the size it was created \
         with, or remove it (shmkit rm)"
    )]
    SizeMismatch {
        /// The name.
        name: String,
        /// Elements the caller asked for.
        expected: u64,
        /// Elements the segment holds.
        found: u64,
    },
    /// An array shape that cannot exist: no dimensions, more than
    /// [`MAX_DIMS`](crate::shared::MAX_DIMS), or more elements than the address space holds.
    #[error("array shape {shape:?} is invalid: {reason}")]
    BadShape {
        /// The dimensions asked for.
        shape: Vec<usize>,
        /// What is wrong with them.
        reason: &'static str,
    },
    /// The array has another shape than asked for (an `open_or_create` whose shape differs
    /// from the creator's, or [`SharedArray::expect_shape`](crate::SharedArray::expect_shape)).
    #[error(
        "array {name} has shape {found:?}, not {expected:?}: open it with the shape it was created \
         with (or reshape your handle when the element count matches), or remove it (shmkit rm)"
    )]
    ShapeMismatch {
        /// The name.
        name: String,
        /// The shape the caller asked for.
        expected: Vec<usize>,
        /// The shape the segment records.
        found: Vec<usize>,
    },
    /// A kind code this build does not know.
    #[error("segment {name} holds an object of unknown kind {code}: it was written by a newer shmkit; upgrade")]
    UnknownKind {
        /// The name.
        name: String,
        /// The stored kind code.
        code: u32,
    },
    /// Header fields contradict each other.
    #[error("segment {name} is corrupt: {reason}; remove it (shmkit rm)")]
    Corrupt {
        /// The name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The creator did not publish the segment in time.
    #[error(
        "segment {name} was still being initialised after {waited:?}: its creator may have died; \
         retry with a longer open timeout or remove it (shmkit rm)"
    )]
    InitTimeout {
        /// The name.
        name: String,
        /// How long `open` waited.
        waited: Duration,
    },
    /// Any other OS error.
    #[error("{op} failed for segment {name}: {source}")]
    Io {
        /// The failing operation.
        op: &'static str,
        /// The name (empty for anonymous segments).
        name: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl SegmentError {
    pub(crate) fn io(op: &'static str, name: &str, source: std::io::Error) -> Self {
        SegmentError::Io { op, name: name.to_owned(), source }
    }
}
