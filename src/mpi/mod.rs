//! Scaling out: shmkit arrays over MPI-3 shared-memory windows, and halo exchange between
//! nodes with MPI messages (feature `mpi`, on the [`mpi`](https://docs.rs/mpi) crate).
//!
//! Inside a node (the ranks of one machine) ranks share memory exactly as pool workers
//! share a [`SharedArray`](crate::SharedArray): each rank writes its own part as `&mut [T]`
//! and reads its neighbours' parts in place, zero copy. Between nodes, the edges a rank
//! needs travel as MPI messages. The same kernel code runs either way, with bitwise
//! identical results.
//!
//! - [`Node`]: this rank's world and the ranks it shares memory with
//!   (`MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)`); [`Split`] (`SHMKIT_MPI_SPLIT`) can cut
//!   a machine into smaller "nodes", down to one rank each, to test the cross-node path on
//!   one machine.
//! - [`NodeArray`]: an array over `MPI_Win_allocate_shared` windows, read and written in
//!   fenced epochs (the soundness argument is in its module docs).
//! - [`HaloArray`]: a global array distributed over the whole job with halo exchange.
//!
//! # Failure
//!
//! MPI jobs are all-or-nothing: rsmpi leaves MPI's default error handler,
//! `MPI_ERRORS_ARE_FATAL`, in place, so one rank that dies or fails an MPI call aborts
//! every rank of the job (the process manager, e.g. `mpiexec`, kills the rest). There is no
//! per-worker recovery as in [`Pool`](crate::pool::Pool). The error codes checked here
//! only come back under a non-fatal error handler.
//!
//! # Running
//!
//! `mpiexec -n 4 ./target/release/examples/mpi_heat` on one machine;
//! `mpiexec -f hostfile -n 64 …` (MPICH) or `mpiexec --hostfile hostfile -n 64 …` (Open MPI)
//! on a cluster. `SHMKIT_MPI_SPLIT=rank mpiexec -n 2 …` forces messages between the two ranks.

mod halo;
mod node;
mod sys;
mod window;

pub use halo::{HaloArray, Step};
pub use node::{Node, Split};
pub use window::{Front, NodeArray};

/// Errors of the MPI layer.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum MpiError {
    /// An MPI call returned an error code (only possible when the communicator's error
    /// handler is not `MPI_ERRORS_ARE_FATAL`).
    #[error(
        "{op} failed with MPI error code {code}; check the MPI installation (mpichversion / ompi_info) and that all ranks make the same calls"
    )]
    Call {
        /// The MPI function.
        op: &'static str,
        /// Its return code.
        code: i32,
    },
    /// `SHMKIT_MPI_SPLIT` (or [`Split::parse`]) got a value it does not know.
    #[error(
        "SHMKIT_MPI_SPLIT={value:?} is not understood: use `shared` (one node per machine, the default), `rank` (every rank its own node) or a number of ranks per node"
    )]
    BadSplit {
        /// The value given.
        value: String,
    },
    /// A window of this size cannot be allocated.
    #[error("a window part of {bytes} bytes does not fit in MPI_Aint; use fewer elements per rank or more ranks")]
    TooLarge {
        /// Requested bytes.
        bytes: usize,
    },
    /// A rank index out of range.
    #[error("rank {rank} does not exist: the communicator has {size} ranks")]
    NoSuchRank {
        /// The rank asked for.
        rank: usize,
        /// The communicator's size.
        size: usize,
    },
    /// `MPI_Win_shared_query` reported a part that does not match what the rank allocated.
    #[error(
        "MPI_Win_shared_query gave rank {rank} a part of {bytes} bytes (or misaligned) instead of {expected}: the MPI library does not give shared windows as MPI-3 specifies"
    )]
    BadWindow {
        /// The node rank whose part was queried.
        rank: usize,
        /// Bytes reported.
        bytes: usize,
        /// Bytes allocated.
        expected: usize,
    },
    /// Ranks passed different arguments to a collective call.
    #[error("ranks disagree on the arguments of {what}: every rank must pass the same values")]
    Mismatch {
        /// The call.
        what: &'static str,
    },
    /// The node's fence barrier failed (broken: only if something else aborted it).
    #[error(
        "the fence barrier of a NodeArray failed ({source}); every rank of the node must fence the array the same number of times"
    )]
    Fence {
        /// The barrier's error.
        source: crate::sync::LockError,
    },
    /// The per-rank element counts of a [`HaloArray`] are unusable.
    #[error("bad HaloArray counts: {reason}; give one count per rank, each at least the halo width")]
    BadCounts {
        /// What is wrong.
        reason: String,
    },
}
