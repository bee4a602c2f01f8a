//! Errors of the process layer.

use std::time::Duration;

use super::signal_name;
use crate::segment::SegmentError;

/// Why a process could not be started, or did not deliver its result.
///
/// Each variant's message says what to do about it.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// `StartMethod::Auto` found other threads and no fork server, or `StartMethod::Fork`
    /// found other threads.
    #[error(
        "this process has {threads} threads: forking now could deadlock the child on a lock another \
         thread holds. Start the fork server while still single-threaded (call \
         shmkit::process::fork_server::start() first thing in main, or put \
         shmkit::fork_server_at_load!() in the binary) and use StartMethod::Auto; only if you can \
         prove no other thread holds a lock the child needs, use the unsafe force_fork() of \
         ProcessBuilder or PoolBuilder"
    )]
    ThreadsExist {
        /// Threads counted in this process.
        threads: usize,
    },
    /// A fork was asked for while the calling thread holds a shmkit lock or claim (or a
    /// thread of this process exited holding one): the child would get a copy of the
    /// guard, and with it a second `&mut` to the data.
    #[error(
        "this thread holds a shmkit lock or claim: a forked child would inherit a copy of its guard; \
         drop guards before starting a process, or start the fork server (shmkit::process::fork_server)"
    )]
    LocksHeld,
    /// `StartMethod::ForkServer` was asked for but no fork server runs for this process.
    #[error(
        "no fork server runs for this process: call shmkit::process::fork_server::start() first thing \
         in main (while single-threaded), or put shmkit::fork_server_at_load!() in the binary"
    )]
    NoForkServer,
    /// The fork server stopped answering.
    #[error("the fork server died or stopped answering ({reason}); restart the program")]
    ForkServerDied {
        /// What was observed.
        reason: String,
    },
    /// A system call needed to start or watch a process failed.
    #[error("{op} failed: {source}; check the process and file-descriptor limits (ulimit -u, ulimit -n)")]
    Os {
        /// The failing operation.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The shared segment for arguments and results could not be created.
    #[error("could not create the shared segment for the process: {0}")]
    Segment(#[from] SegmentError),
    /// The target function panicked.
    #[error("process {pid} panicked: {message}")]
    Panicked {
        /// The child's pid.
        pid: u32,
        /// The panic message.
        message: String,
    },
    /// A signal killed the child before it returned a result.
    #[error("process {pid} was killed by signal {signal} ({}) before it returned a result", signal_name(*.signal))]
    Killed {
        /// The child's pid.
        pid: u32,
        /// The signal number.
        signal: i32,
    },
    /// The child exited without returning a result (it called `exit`, or a fork-safety check failed).
    #[error("process {pid} exited with code {code} before it returned a result")]
    Exited {
        /// The child's pid.
        pid: u32,
        /// Its exit code.
        code: i32,
    },
    /// `join_timeout` ran out; the process still runs.
    #[error("process {pid} was still running after {waited:?}: join again, or terminate() it")]
    Timeout {
        /// The child's pid.
        pid: u32,
        /// How long the call waited.
        waited: Duration,
    },
}

impl ProcessError {
    pub(crate) fn os(op: &'static str, source: std::io::Error) -> Self {
        ProcessError::Os { op, source }
    }
}
