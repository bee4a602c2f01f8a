//! Errors of the pool.

use std::time::Duration;

use crate::process::{ProcessError, signal_name};
use crate::segment::SegmentError;

/// Why a pool call failed.
///
/// Each variant's message says what to do about it.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The task panicked; the worker survived and the pool keeps working.
    #[error("a task panicked in worker {pid}: {message}")]
    TaskPanicked {
        /// The worker's pid.
        pid: u32,
        /// The panic message and location.
        message: String,
    },
    /// A signal killed the worker while it ran the task; the pool started a replacement.
    #[error(
        "worker {pid} was killed by signal {signal} ({}) while running this task; the pool replaced \
         it, so retry if the task is safe to repeat",
        signal_name(*.signal)
    )]
    WorkerDied {
        /// The dead worker's pid.
        pid: u32,
        /// The signal that killed it (9 = SIGKILL, 11 = SIGSEGV, …).
        signal: i32,
    },
    /// The worker exited (`std::process::exit` in the task?) while running the task.
    #[error("worker {pid} exited with code {code} while running this task; the pool replaced it")]
    WorkerExited {
        /// The worker's pid.
        pid: u32,
        /// Its exit code.
        code: i32,
    },
    /// The task reported an error (for example, a claim on a shared array failed).
    #[error("the task failed: {message}")]
    TaskFailed {
        /// What went wrong.
        message: String,
    },
    /// An argument or result does not fit a task message.
    #[error(
        "{what} of {size} bytes does not fit the pool's {limit}-byte task messages: raise \
         PoolBuilder::message_size, or pass large data through a SharedArray (map_chunks)"
    )]
    MessageTooLarge {
        /// "argument", "result", "initializer argument".
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The pool no longer accepts tasks.
    #[error("the pool is closed (close() or terminate() was called): create a new pool")]
    Closed,
    /// The pool was terminated before the task finished.
    #[error("the pool was terminated before this task finished")]
    Terminated,
    /// A wait ran out.
    #[error("no result after {waited:?}: the task still runs; wait again, or terminate the pool")]
    Timeout {
        /// How long the call waited.
        waited: Duration,
    },
    /// The initializer panicked in a worker: the pool cannot run tasks.
    #[error("{reason}; fix the initializer and create a new pool")]
    InitializerFailed {
        /// What happened.
        reason: String,
    },
    /// The pool's manager process died or gave up: the pool cannot run tasks.
    #[error("the pool is broken: {reason}; create a new pool")]
    Broken {
        /// What happened.
        reason: String,
    },
    /// `map_chunks` was given an array the workers cannot open.
    #[error(
        "map_chunks needs a named SharedArray (SharedArray::create(None, n) picks a random name); \
         anonymous arrays cannot be reopened by the workers yet"
    )]
    AnonymousArray,
    /// Starting the manager failed.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The pool's shared segment could not be created.
    #[error("could not create the pool's shared segment: {0}")]
    Segment(#[from] SegmentError),
    /// Another OS call failed.
    #[error("{op} failed: {source}")]
    Os {
        /// The failing operation.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}
