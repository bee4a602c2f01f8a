//! `SerdeQueue<T>`: typed messages of any serde type, encoded with postcard into a
//! [`ByteQueue`] (cargo feature `serde`).

use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::bytes::ByteQueue;
use super::error::{GetError, PutError};
use crate::segment::kind::{Create, SegmentKind, segment_handle};
use crate::segment::{Expect, Layout, Segment, SegmentError};

/// A bounded MPMC queue of `T` values of any serde type, like Python's `Queue` of pickled
/// objects: each value is encoded with [postcard](https://docs.rs/postcard) (compact,
/// varint-based) into one slot of up to `max_message` bytes. A value whose encoding does
/// not fit is refused with [`PutError::TooLarge`] and handed back, never truncated.
///
/// The segment records only "byte queue", not `T`: processes must agree on `T`; a value of
/// another type is reported as [`GetError::Decode`] when its bytes do not decode.
///
/// ```
/// # #[cfg(feature = "serde")] {
/// use shmkit::channel::SerdeQueue;
/// let q = SerdeQueue::<(String, Vec<u32>)>::create(None, 8, 256)?;
/// let peer = SerdeQueue::<(String, Vec<u32>)>::open(q.name().unwrap())?;
/// q.put(("primes".into(), vec![2, 3, 5, 7])).unwrap();
/// assert_eq!(peer.get().unwrap(), ("primes".into(), vec![2, 3, 5, 7]));
/// # }
/// # Ok::<(), shmkit::SegmentError>(())
/// ```
pub struct SerdeQueue<T> {
    bytes: ByteQueue,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> std::fmt::Debug for SerdeQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerdeQueue").field("bytes", &self.bytes).field("type", &std::any::type_name::<T>()).finish()
    }
}

impl<T> SegmentKind for SerdeQueue<T> {
    type Error = SegmentError;

    fn expect() -> Expect {
        ByteQueue::expect()
    }

    fn attach(seg: Segment) -> Result<Self, SegmentError> {
        Ok(SerdeQueue { bytes: ByteQueue::attach(seg)?, _t: PhantomData })
    }
}

impl<T> Create<(usize, usize)> for SerdeQueue<T> {
    fn layout(args: &(usize, usize)) -> Result<Layout, SegmentError> {
        <ByteQueue as Create<(usize, usize)>>::layout(args)
    }

    unsafe fn init(seg: &Segment, args: (usize, usize)) -> Result<(), SegmentError> {
        // SAFETY: the caller's contract, and the layout is the byte queue's.
        unsafe { <ByteQueue as Create<(usize, usize)>>::init(seg, args) }
    }

    fn check_existing(handle: &Self, args: &(usize, usize)) -> Result<(), SegmentError> {
        ByteQueue::check_existing(&handle.bytes, args)
    }
}

segment_handle! {
    impl[T: Serialize + DeserializeOwned] SerdeQueue<T>,
    "queue",
    SegmentError, bytes.seg,
    (capacity: usize, max_message: usize) => (capacity, max_message)
}

impl<T: Serialize + DeserializeOwned> SerdeQueue<T> {
    /// Put `value`, waiting while the queue is full.
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        self.put_with(value, |q, m| q.put(m))
    }

    /// Put `value` if there is room now.
    pub fn try_put(&self, value: T) -> Result<(), PutError<T>> {
        self.put_with(value, |q, m| q.try_put(m))
    }

    /// Put `value`, waiting at most `timeout` for room.
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.put_with(value, |q, m| q.put_timeout(m, timeout))
    }

    fn put_with(
        &self,
        value: T,
        put: impl for<'m> FnOnce(&ByteQueue, &'m [u8]) -> Result<(), PutError<&'m [u8]>>,
    ) -> Result<(), PutError<T>> {
        let encoded = match postcard::to_allocvec(&value) {
            Ok(e) => e,
            Err(e) => return Err(PutError::Encode { msg: value, reason: e.to_string() }),
        };
        put(&self.bytes, &encoded).map_err(|e| match e {
            PutError::Full(_) => PutError::Full(value),
            PutError::Closed(_) => PutError::Closed(value),
            PutError::Timeout(_) => PutError::Timeout(value),
            PutError::Disconnected(_) => PutError::Disconnected(value),
            PutError::TooLarge { len, max, .. } => PutError::TooLarge { msg: value, len, max },
            PutError::Corrupt { reason, .. } => PutError::Corrupt { msg: value, reason },
            PutError::Encode { reason, .. } => PutError::Encode { msg: value, reason },
        })
    }

    /// Take the oldest value, waiting while the queue is empty.
    pub fn get(&self) -> Result<T, GetError> {
        self.bytes.get_with(decode)?
    }

    /// Take the oldest value if there is one now.
    pub fn try_get(&self) -> Result<T, GetError> {
        self.bytes.try_get_with(decode)?
    }

    /// Take the oldest value, waiting at most `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        self.bytes.get_with_timeout(timeout, decode)?
    }

    /// The byte queue underneath (length, capacity, close, name, …).
    pub fn as_bytes(&self) -> &ByteQueue {
        &self.bytes
    }

    /// Close the queue (see [`Queue::close`](super::Queue::close)).
    pub fn close(&self) -> bool {
        self.bytes.close()
    }
}

/// Decode a value straight from its slot.
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, GetError> {
    postcard::from_bytes(bytes).map_err(|e| GetError::Decode(e.to_string()))
}
