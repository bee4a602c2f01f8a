//! The one error type of the manager area ([`SharedDict`](super::SharedDict) and
//! [`SharedList`](super::SharedList)).

use crate::segment::SegmentError;
use crate::sync::LockError;

/// Why a [`SharedDict`](super::SharedDict) or [`SharedList`](super::SharedList) operation failed.
///
/// ```
/// use shmkit::manager::{ManagerError, SharedDict};
/// let d = SharedDict::<str, u64>::anonymous(1)?;
/// d.insert("a", 1)?;
/// assert!(matches!(d.insert("b", 2), Err(ManagerError::Full { .. })));
/// assert!(matches!(d.insert(&"x".repeat(100), 3), Err(ManagerError::KeyTooLong { .. })));
/// # Ok::<(), ManagerError>(())
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// The dict holds `capacity` entries, or the list `capacity` elements.
    #[error(
        "the shared {what} is full: it holds its capacity of {capacity} entries; remove some, or create \
         it with a larger capacity"
    )]
    Full {
        /// `"dict"` or `"list"`.
        what: &'static str,
        /// Its fixed capacity.
        capacity: u64,
    },
    /// Every node of the key's stripe is in use although the dict holds fewer than its
    /// capacity (only keys chosen to collide under the dict's fixed hash get here).
    #[error(
        "the shared dict's stripe {stripe} for this key is full ({nodes} entries) although the dict holds \
         {len} of its {capacity}: the keys collide under its fixed hash; create it with more capacity or \
         more stripes"
    )]
    StripeFull {
        /// The stripe the key hashes to.
        stripe: usize,
        /// Entries that stripe can hold.
        nodes: u32,
        /// Entries in the dict.
        len: u64,
        /// The dict's capacity.
        capacity: u64,
    },
    /// A key longer than the dict's maximum key length.
    #[error(
        "key of {len} bytes is longer than this dict's maximum of {max} bytes; use a shorter key, or create the dict with DictOptions::max_key_len"
    )]
    KeyTooLong {
        /// The key's length in bytes.
        len: usize,
        /// The dict's maximum.
        max: usize,
    },
    /// A list index past the end.
    #[error("index {index} is out of bounds for a shared list of length {len}")]
    OutOfBounds {
        /// The index asked for.
        index: usize,
        /// The list's length at the time.
        len: usize,
    },
    /// The segment holds a dict of another key type.
    #[error(
        "shared dict {name} has keys of type {found}, not {expected}; open it with the key type it was created with"
    )]
    KeyTypeMismatch {
        /// The segment's name (empty when anonymous).
        name: String,
        /// What the caller asked for.
        expected: String,
        /// What the dict holds.
        found: String,
    },
    /// A size asked for at creation (capacity, key length, value size) is above its
    /// documented bound ([`MAX_CAPACITY`](super::MAX_CAPACITY), [`MAX_KEY_LEN`](super::MAX_KEY_LEN),
    /// [`SharedList::MAX_CAPACITY`](super::SharedList::MAX_CAPACITY), …).
    #[error("{what} of {requested} is too large: at most {max} is allowed; ask for less, or split the data")]
    TooLarge {
        /// What was too large (`"dict capacity"`, `"max_key_len"`, `"list capacity"`, …).
        what: &'static str,
        /// What was asked for.
        requested: u64,
        /// The bound.
        max: u64,
    },
    /// A creation parameter is out of range.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The parameter.
        what: &'static str,
        /// What is allowed.
        reason: String,
    },
    /// The shared structure is corrupt: a peer wrote garbage into it.
    #[error("the shared {what} is corrupt ({reason}); recreate it")]
    Corrupt {
        /// `"dict"` or `"list"`.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Creating or opening the segment failed.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// Taking a lock failed (including [`LockError::Timeout`] for handles with a timeout).
    #[error(transparent)]
    Lock(#[from] LockError),
}

impl ManagerError {
    pub(crate) fn corrupt_dict(reason: impl Into<String>) -> Self {
        ManagerError::Corrupt { what: "dict", reason: reason.into() }
    }

    pub(crate) fn corrupt_list(reason: impl Into<String>) -> Self {
        ManagerError::Corrupt { what: "list", reason: reason.into() }
    }
}
