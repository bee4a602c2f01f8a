//! A process pool like Python's `multiprocessing.Pool` — `map`, `imap`, `imap_unordered`,
//! `starmap`, `apply`, `apply_async` with callbacks — whose tasks cross through shared
//! memory, which hands each worker its own slice of a [`SharedArray`](crate::SharedArray)
//! without copying ([`Pool::map_chunks`]), and which does not hang when a worker dies.
//!
//! Tasks are `fn` items (or non-capturing closures) over `Pod` arguments and results; under
//! feature `serde`, the `*_serde` family (`map_serde`, `imap_serde`, `starmap_serde`,
//! `apply_async_serde`, …) takes any serde types. Parameters a closure would capture travel
//! as a context value instead: [`Pool::map_chunks_with`] hands one to every band of rows of
//! an N-dimensional array, with [`ArrayRef`]s for other arrays (see the `context` docs on
//! why closures cannot cross a process boundary).
//!
//! For fuzz and stress campaigns, [`Pool::map_results`], [`Pool::imap_results`] and
//! [`Pool::map_chunks_results`] give each input its own `Result<R, TaskError>`: a crash, a
//! hang past [`PoolBuilder::task_timeout`] or a panic fails only that input, and every
//! other input still runs.
//!
//! # Architecture
//!
//! ```text
//!  your process (any threads)          manager (1 thread)            workers
//!  Pool ── mailboxes in a sealed memfd ───────────────────────────── worker 0, 1, …
//!     └── eventfd, pidfd ──────────── forks, reaps (pidfd), replaces ─┘
//! ```
//!
//! - Each worker has a mailbox: a ring of task entries (function address, argument bytes,
//!   result bytes) and futex words. The calling thread writes entries and harvests results
//!   itself, spinning briefly and then parking on a futex: no pipes, no dispatcher thread.
//! - A single-threaded *manager* process forks the workers, so replacing a dead worker never
//!   forks from your (possibly multi-threaded) process. It watches each worker's pidfd; when
//!   one dies mid-task it fails that task with [`PoolError::WorkerDied`] (pid and signal)
//!   at once and forks a replacement that continues with the queued entries.
//! - The manager itself is forked from your process ([`StartMethod::Fork`], when it is
//!   single-threaded) or by the fork server ([`StartMethod::ForkServer`]); see
//!   [`StartMethod`] for when each applies. It exits when your process does (pidfd), and
//!   the workers die with the manager (`PR_SET_PDEATHSIG`).
//!
//! # Fork safety: which start method when
//!
//! Forking a process that has threads copies only the forking thread; a lock another thread
//! held at that instant (stdout, the allocator of a non-glibc malloc, your own mutexes) stays
//! locked for ever in the child. So the pool forks from your process only when that is safe:
//!
//! - **Single-threaded process** (a plain `main` that has not started threads, a benchmark
//!   harness): [`StartMethod::Auto`] forks the manager directly. Fastest start; the workers
//!   see your process's memory as it was when the pool was created.
//! - **Process with threads** (test harnesses, async runtimes, GUIs, programs that create a pool
//!   late): start the fork server while still single-threaded —
//!   [`fork_server::start()`](crate::process::fork_server::start) first thing in `main`, or
//!   [`fork_server_at_load!()`](crate::fork_server_at_load) in the binary, which runs before
//!   `main` — and `Auto` uses it. Workers then start from the server's early snapshot: pass
//!   everything they need as task arguments or in shared memory, not in globals set later.
//! - Neither: `Auto` returns [`ProcessError::ThreadsExist`](crate::process::ProcessError)
//!   with these instructions, and so does [`StartMethod::Fork`] (it forks only a
//!   single-threaded process). Forking a process with threads anyway is the `unsafe`
//!   opt-in [`PoolBuilder::force_fork`], whose contract is that no other thread holds a lock
//!   the manager, the initializer or a task will take.
//!
//! Replacement workers are always forked by the single-threaded manager, so a pool stays
//! fork-safe however many threads your process starts after creating it.
//!
//! # Promises at the edges
//!
//! - **Bounded start-up.** [`PoolBuilder::build`] returns once every worker has run the
//!   initializer and reported ready. A worker (or a replacement) that has not within
//!   [`PoolBuilder::start_timeout`] (default 20 s) is killed and the pool fails with
//!   [`PoolError::StartTimeout`], naming its pid: the typical cause is a worker deadlocked on
//!   a lock inherited through a fork from a multi-threaded process.
//! - **A failed batch call leaves nothing behind.** When a `map*`, `starmap` or
//!   `map_chunks*` call fails (a panic, a dead worker), it cancels its queued tasks and
//!   returns only once none of its tasks can still run (it waits for those running); so does
//!   an [`Imap`] dropped before its end. A retry never races with a straggler of the failed
//!   call.
//! - **`terminate()` says `Terminated`** to every thread waiting on the pool (another
//!   thread's `map`, an [`AsyncResult`], `apply_async_with` callbacks): tasks are marked
//!   before the workers are killed.
//! - **`join()` needs a stopped pool:** without [`Pool::close`] or [`Pool::terminate`]
//!   first it returns [`PoolError::StillRunning`] (Python's `ValueError`).
//! - **Timed calls keep their deadlines** ([`AsyncResult::get_timeout`],
//!   [`AsyncResult::ready`], [`Pool::join_timeout`]) even while a worker or the manager is
//!   stopped (SIGSTOP) or another thread is terminating the pool.
//! - **Shared memory is not trusted.** The configuration is read once by the manager and
//!   checked against the segment's size and the pool's limits; workers use the manager's
//!   private copy. Mailbox words are checked against the ring (`tail` within what was
//!   queued, `head` at most a ring ahead), and every entry carries a MAC of its code
//!   addresses and sizes under a key that never enters shared memory, so a worker never
//!   calls an address another process wrote. An impossible value gives
//!   [`PoolError::Corrupt`] (and the pool stops), never a crash or a hang.
//!
//! [`StartMethod`]: crate::process::StartMethod
//! [`StartMethod::Auto`]: crate::process::StartMethod::Auto
//! [`StartMethod::Fork`]: crate::process::StartMethod::Fork
//! [`StartMethod::ForkServer`]: crate::process::StartMethod::ForkServer

mod api;
mod chunks;
mod config;
mod context;
mod dispatch;
mod error;
mod handle;
mod imap;
mod imap_results;
mod layout;
mod results;
#[cfg(feature = "serde")]
mod serde_tasks;
mod sink;
mod stream;
mod supervisor;
mod task;
mod timeout;
mod words;
mod worker;

pub use api::{Pool, PoolBuilder, Progress};
#[cfg(feature = "serde")]
pub use context::Serde;
pub use context::{ARRAY_REF_NAME_CAP, ArrayRef, TaskData};
pub use error::{PoolError, TaskError};
pub use handle::AsyncResult;
pub use imap::Imap;
pub use imap_results::ImapResults;
pub use results::ItemOptions;
#[cfg(feature = "serde")]
pub use serde_tasks::{SerdeAsyncResult, SerdeImap};
