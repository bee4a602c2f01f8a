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
    /// An item of the task ran past its timeout ([`PoolBuilder::task_timeout`] or
    /// [`ItemOptions::timeout`]): its worker was SIGKILLed and replaced.
    ///
    /// [`PoolBuilder::task_timeout`]: super::PoolBuilder::task_timeout
    /// [`ItemOptions::timeout`]: super::ItemOptions::timeout
    #[error(
        "the task ran {ran:?}, past its {limit:?} timeout, in worker {pid}, which was killed and \
         replaced: the input hangs or is slow; raise the timeout if it is only slow"
    )]
    TaskTimedOut {
        /// The killed worker's pid.
        pid: u32,
        /// How long the item had run when the worker was killed.
        ran: Duration,
        /// The timeout it had.
        limit: Duration,
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
    /// [`Pool::join`](super::Pool::join) or [`join_timeout`](super::Pool::join_timeout) was
    /// called on a pool that still takes tasks (Python raises `ValueError("Pool is still
    /// running")`). Nothing was stopped; the pool keeps working.
    #[error(
        "join() waits for a stopped pool, and this one still runs: call close() first (queued tasks \
         finish, then join() returns) or terminate() (stop at once)"
    )]
    StillRunning,
    /// A worker (or the pool's manager) did not report ready within the start-up timeout
    /// ([`PoolBuilder::start_timeout`](super::PoolBuilder::start_timeout)); it was killed and
    /// the pool cannot run tasks.
    ///
    /// The usual cause is a process forked from a multi-threaded program
    /// ([`PoolBuilder::force_fork`](super::PoolBuilder::force_fork)): the child inherits every
    /// lock another thread held at that instant (stdout, a mutex, the panic hook) and
    /// deadlocks when it takes one. Otherwise, an initializer that blocks or is slow.
    #[error(
        "the pool's {role} process {pid} did not report ready within {waited:?} and was killed: a \
         process forked from a multi-threaded program can deadlock in the child on a lock another \
         thread held at the fork (stdout, a mutex); start pools through the fork server \
         (StartMethod::Auto or ForkServer, with shmkit::process::fork_server::start() first thing in \
         main or shmkit::fork_server_at_load!()). If the initializer is only slow, raise \
         PoolBuilder::start_timeout; create a new pool"
    )]
    StartTimeout {
        /// "worker" or "manager".
        role: &'static str,
        /// The pid of the process that did not come up.
        pid: u32,
        /// How long it was given.
        waited: Duration,
    },
    /// A word of the pool's shared memory (its header or a worker's mailbox) holds a value
    /// the pool never writes there: another process with access to the memory wrote it. The
    /// pool stops (its workers are killed) rather than trust it.
    #[error(
        "the pool's shared memory is corrupt: {field} = {value} is impossible here (another process \
         wrote into it); the pool was stopped: create a new pool"
    )]
    Corrupt {
        /// The field, such as "header.workers" or "mailbox.tail".
        field: &'static str,
        /// The value found.
        value: u64,
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
    /// An array's name is too long for an [`ArrayRef`](super::ArrayRef) (task records and
    /// contexts carry arrays by name).
    #[error("the array name {name:?} is longer than the {limit} bytes a task can carry: give the array a shorter name")]
    ArrayNameTooLong {
        /// The name.
        name: String,
        /// The longest name a task carries.
        limit: usize,
    },
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

/// Why one input of a `*_results` call ([`Pool::map_results`](super::Pool::map_results) and
/// its siblings) has no result: every other input still ran.
///
/// `error` is the cause: [`PoolError::WorkerDied`] (a crash: pid and signal),
/// [`PoolError::WorkerExited`], [`PoolError::TaskTimedOut`] (a hang: pid, how long it ran),
/// [`PoolError::TaskPanicked`], [`PoolError::TaskFailed`]; or, when the pool itself stopped
/// before the input ran, [`PoolError::Terminated`] or [`PoolError::Broken`].
#[derive(Debug, thiserror::Error)]
#[error("input {index}: {error}{}", words_suffix(last_words.as_deref()))]
pub struct TaskError {
    /// The input's position in the call's inputs (for `map_chunks_results`: the chunk's).
    pub index: usize,
    /// What happened to it.
    #[source]
    pub error: PoolError,
    /// What the worker wrote to stderr last before a crash or a timeout (its panic message,
    /// an assertion, a sanitizer report), bounded; with
    /// [`PoolBuilder::capture_stderr`](super::PoolBuilder::capture_stderr) only.
    pub last_words: Option<String>,
}

fn words_suffix(words: Option<&str>) -> String {
    match words {
        Some(w) if !w.is_empty() => format!("; its last words: {w}"),
        _ => String::new(),
    }
}

impl TaskError {
    /// Whether the input crashed its worker (a signal or an exit).
    pub fn is_crash(&self) -> bool {
        matches!(self.error, PoolError::WorkerDied { .. } | PoolError::WorkerExited { .. })
    }

    /// Whether the input ran past its timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self.error, PoolError::TaskTimedOut { .. })
    }

    /// Whether the input panicked (the worker lived on).
    pub fn is_panic(&self) -> bool {
        matches!(self.error, PoolError::TaskPanicked { .. })
    }

    /// The pid of the worker it failed in, if it ran.
    pub fn pid(&self) -> Option<u32> {
        match self.error {
            PoolError::WorkerDied { pid, .. }
            | PoolError::WorkerExited { pid, .. }
            | PoolError::TaskTimedOut { pid, .. }
            | PoolError::TaskPanicked { pid, .. } => Some(pid),
            _ => None,
        }
    }
}
