//! Processes: run a function in a child process, start children safely from a
//! multi-threaded program, and learn how they ended without guessing by pid.
//!
//! - [`Process`]: one function in one child, like Python's `multiprocessing.Process`, with
//!   the result coming back through shared memory; `join` with timeout, exit status,
//!   `terminate`/`kill`, `is_alive`.
//! - [`StartMethod`]: `Fork` (single-threaded callers), `ForkServer` (a helper forked
//!   before any thread existed; see [`fork_server`]), `Auto` (picks, or says what to do).
//! - Death detection uses pidfds (`pidfd_open`, `pidfd_send_signal`) and `waitpid` on our
//!   own children, never `kill(pid, 0)`. Children set `PR_SET_PDEATHSIG(SIGKILL)` and check
//!   `getppid()` right after, so a parent that died during the fork is not missed.
//!
//! Functions are plain `fn` items or non-capturing closures: their addresses are valid in
//! every fork of the binary image.

mod child;
mod entry;
mod error;
pub mod fork_server;
mod handle;

pub use crate::sys::process::{ExitStatus, signal_name, thread_count};
pub use child::StartMethod;
pub(crate) use child::{Child, Method, spawn, start_setters};
pub(crate) use entry::{EXIT_RECORD_LEN, ExitRecord};
pub use error::ProcessError;
pub(crate) use handle::truncate_utf8;
pub use handle::{Process, ProcessBuilder};

/// The message of a panic payload (`&str` or `String`; anything else is described).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}
