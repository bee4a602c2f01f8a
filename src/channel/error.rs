//! Errors of queues and pipes. A failed put hands the message back.

use std::fmt;

/// Why a message was not put (sent); the message comes back in every case.
///
/// ```
/// use shmkit::channel::{PutError, Queue};
/// let q = Queue::<u32>::anonymous(1)?;
/// q.try_put(1).unwrap();
/// match q.try_put(2) {
///     Err(PutError::Full(v)) => assert_eq!(v, 2), // the value is handed back
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), shmkit::SegmentError>(())
/// ```
#[non_exhaustive]
pub enum PutError<T> {
    /// Every slot holds an unconsumed message (`try_put`).
    Full(T),
    /// The queue was closed; nothing more can be put.
    Closed(T),
    /// The timeout passed while the queue stayed full.
    Timeout(T),
    /// The pipe's peer end hung up or its process died.
    Disconnected(T),
    /// The message is larger than the queue's slots.
    TooLarge {
        /// The message.
        msg: T,
        /// Its length in bytes.
        len: usize,
        /// The largest message the queue takes.
        max: usize,
    },
    /// The queue's shared words are corrupt (overwritten by a faulty or hostile process).
    Corrupt {
        /// The message.
        msg: T,
        /// What is wrong.
        reason: &'static str,
    },
    /// The value could not be encoded (serde queues).
    Encode {
        /// The value.
        msg: T,
        /// The encoder's error.
        reason: String,
    },
}

impl<T> PutError<T> {
    /// The message that was not put.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(v) | PutError::Closed(v) | PutError::Timeout(v) | PutError::Disconnected(v) => v,
            PutError::TooLarge { msg, .. } | PutError::Corrupt { msg, .. } | PutError::Encode { msg, .. } => msg,
        }
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            PutError::Full(_) => "Full",
            PutError::Closed(_) => "Closed",
            PutError::Timeout(_) => "Timeout",
            PutError::Disconnected(_) => "Disconnected",
            PutError::TooLarge { len, max, .. } => return write!(f, "TooLarge {{ len: {len}, max: {max}, .. }}"),
            PutError::Corrupt { reason, .. } => return write!(f, "Corrupt {{ reason: {reason:?}, .. }}"),
            PutError::Encode { reason, .. } => return write!(f, "Encode {{ reason: {reason:?}, .. }}"),
        };
        write!(f, "{name}(..)")
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("the queue is full: retry later, use put() to wait, or make it larger"),
            PutError::Closed(_) => f.write_str("the queue is closed: no more messages can be put"),
            PutError::Timeout(_) => {
                f.write_str("timed out waiting for room in the queue: its consumers are slow, stuck or gone")
            }
            PutError::Disconnected(_) => {
                f.write_str("the other end of the pipe hung up or its process died: nobody will receive this")
            }
            PutError::TooLarge { len, max, .. } => write!(
                f,
                "message of {len} bytes is larger than the queue's {max}-byte slots: create the queue \
                 with a larger max_message, or split the message"
            ),
            PutError::Corrupt { reason, .. } => {
                write!(f, "the queue's shared memory is corrupt ({reason}); recreate the queue")
            }
            PutError::Encode { reason, .. } => {
                write!(f, "the value cannot be encoded ({reason}): check its Serialize implementation")
            }
        }
    }
}

impl<T> std::error::Error for PutError<T> {}

/// Why no message was got (received).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GetError {
    /// No message is available now (`try_get`).
    #[error("the queue is empty: retry later, or use get() to wait")]
    Empty,
    /// The queue was closed and every message has been taken.
    #[error("the queue is closed and drained: no more messages will come")]
    Closed,
    /// The timeout passed while the queue stayed empty.
    #[error("timed out waiting for a message: its producers are slow, stuck or gone")]
    Timeout,
    /// The pipe's peer end hung up or its process died, and every message it sent has
    /// been received.
    #[error("the other end of the pipe hung up or its process died, and nothing is left to receive")]
    Disconnected,
    /// A message's bytes do not decode as the expected type (serde queues): the processes
    /// disagree on the type, or the encoding changed. The message is consumed.
    #[error("a message does not decode as the expected type ({0}): do all processes use the same type?")]
    Decode(String),
    /// The queue's shared words (or a message's length) are corrupt.
    #[error("the queue's shared memory is corrupt ({0}); recreate the queue")]
    Corrupt(&'static str),
}

/// Why a pipe end could not be made.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    /// Creating or opening the segment failed.
    #[error(transparent)]
    Segment(#[from] crate::segment::SegmentError),
    /// The end asked for is connected already (or was, and hung up: pipes connect once).
    #[error("the second end of pipe {name} is taken (pipes connect exactly two ends, once): create a new pipe")]
    EndTaken {
        /// The pipe's name.
        name: String,
    },
    /// Taking the liveness token failed.
    #[error("could not take the pipe end's liveness lock: {0}")]
    Io(#[from] std::io::Error),
}
