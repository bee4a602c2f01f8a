//! How a [`SharedDict`](super::SharedDict) is created or opened.

use std::time::Duration;

use crate::segment::SegmentOptions;

/// Default maximum length of `str` / `[u8]` keys, in bytes.
pub const DEFAULT_MAX_KEY_LEN: usize = 64;

/// How a [`SharedDict`](super::SharedDict) is created or opened: maximum key length, stripes, segment options,
/// lock timeout.
///
/// ```
/// use shmkit::manager::{DictOptions, SharedDict};
/// use std::time::Duration;
/// let d: SharedDict<str, u64> = DictOptions::new()
///     .max_key_len(16)
///     .stripes(8)
///     .timeout(Some(Duration::from_secs(1)))
///     .anonymous(1000)?;
/// assert_eq!((d.max_key_len(), d.stripes(), d.capacity()), (16, 8, 1000));
/// # Ok::<(), shmkit::manager::ManagerError>(())
/// ```
#[derive(Clone, Debug)]
pub struct DictOptions {
    pub(super) max_key_len: usize,
    pub(super) stripes: Option<u32>,
    pub(super) segment: SegmentOptions,
    pub(super) timeout: Option<Duration>,
}

impl Default for DictOptions {
    fn default() -> Self {
        DictOptions {
            max_key_len: DEFAULT_MAX_KEY_LEN,
            stripes: None,
            segment: SegmentOptions::default(),
            timeout: None,
        }
    }
}

impl DictOptions {
    /// Keys up to 64 bytes, stripes chosen from the capacity, default segment options, no
    /// lock timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Longest `str` / `[u8]` key, in bytes (default 64, at most 4096). Every entry reserves
    /// this much; fixed-size keys ignore it.
    pub fn max_key_len(mut self, bytes: usize) -> Self {
        self.max_key_len = bytes;
        self
    }

    /// Number of lock stripes (1 to 1024; default: up to 64, about 16 entries or more each).
    /// More stripes let more processes update different keys at the same time.
    pub fn stripes(mut self, stripes: u32) -> Self {
        self.stripes = Some(stripes);
        self
    }

    /// Segment options (permissions, memory reservation, open timeout).
    pub fn segment(mut self, opts: SegmentOptions) -> Self {
        self.segment = opts;
        self
    }

    /// How long an operation waits for a stripe lock before failing with
    /// [`LockError::Timeout`](crate::LockError::Timeout) (default `None`: as long as it takes).
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }
}
