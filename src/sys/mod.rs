//! Thin wrappers over the Linux system calls shmkit needs.
//!
//! Every function here is a small, audited wrapper: each `unsafe` block names the
//! invariant it relies on. Higher layers never call `libc` for these operations
//! directly. Errors are returned as [`std::io::Error`] so callers can keep them as
//! the `source` of their own typed errors.

pub mod clock;
pub mod fd;
pub mod futex;
pub mod held;
pub mod owner;
pub mod process;
pub mod pthread;
pub mod sched;
pub mod stdio;

pub use clock::Deadline;
