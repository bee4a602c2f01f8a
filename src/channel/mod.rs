//! Queues and pipes between processes: Python's `multiprocessing.Queue` and `Pipe`, in
//! shared memory.
//!
//! | Python `multiprocessing`            | shmkit                                              |
//! |-------------------------------------|-----------------------------------------------------|
//! | `Queue(maxsize)` of small records   | [`Queue<T>`] (fixed-size `Pod` messages)            |
//! | `Queue` of `bytes`                  | [`ByteQueue`] (`&[u8]` in, `Vec<u8>` or a borrowed slot out) |
//! | `Queue` of pickled objects          | `SerdeQueue<T>` (cargo feature `serde`, postcard)  |
//! | `Pipe()` / `Connection.send/recv`   | [`Pipe`] ends: [`PipeEnd::send`] / [`PipeEnd::recv`] |
//!
//! Every blocking call has a `try_` and a `_timeout` variant (CLOCK_MONOTONIC). Blocking
//! calls spin briefly, then park on a futex in the segment; waiter counts keep the
//! uncontended path free of system calls. Failed puts hand the message back
//! ([`PutError`]).
//!
//! # The ring
//!
//! Each queue is a ring of `capacity` slots after Vyukov's bounded MPMC queue (as in
//! crossbeam's `ArrayQueue`): `head` and `tail` count positions from 0, position `p` lives
//! in slot `p % capacity`, and each slot carries a *stamp* saying which position it waits
//! for (`2p`, "free for p") or holds (`2p + 1`, "full with p"). Bit 63 of `tail` marks the
//! queue closed, so a close and a producer's claim cannot cross.
//!
//! To survive processes killed in the middle of an operation, each slot also has a robust
//! process-shared mutex, held only *during* an operation on that slot. A producer: lock the
//! slot, check the stamp is `2p`, claim `p` with a CAS `tail: p → p+1`, copy the message in,
//! store stamp `2p+1` (Release), unlock. A consumer: lock, check `2p+1`, CAS `head: p → p+1`,
//! copy out, store `2(p + capacity)`, unlock. Whoever finds a slot in a state that only a
//! holder may leave it in, and gets its lock (the kernel reports the holder's death as
//! `EOWNERDEAD`; a slot in such a state whose lock is free can only have a dead holder),
//! repairs it:
//!
//! | slot state for position `p`   | stamp        | positions        | lock       | meaning and who moves it on |
//! |-------------------------------|--------------|------------------|------------|-----------------------------|
//! | free                          | `2p`         | `tail ≤ p`       | free       | a producer claims it |
//! | being written                 | `2p`         | `tail > p`       | held       | its producer publishes it; consumers wait (`Pending`) |
//! | **abandoned by its producer** | `2p`         | `tail > p`       | free/died  | the consumer at `head = p` skips it: `head = p+1`, stamp `2(p+cap)`, `abandoned += 1` |
//! | full                          | `2p+1`       | `head ≤ p`       | free       | a consumer takes it |
//! | being read                    | `2p+1`/`2p`  | `head > p`       | held       | its consumer releases it; the producer of `p+cap` waits (`Full`) |
//! | **abandoned by its consumer** | `2p+1`/`2p`  | `head > p`       | free/died  | the producer of `p+cap` frees it: stamp `2(p+cap)`, `abandoned += 1` |
//! | free for the next lap         | `2(p+cap)`   | `head > p`       | free       | a producer claims `p+cap` |
//!
//! Death semantics: a message whose producer died before publishing it, or whose consumer
//! died after claiming it, is lost and counted in [`Queue::abandoned`]; every other message
//! is delivered exactly once. A holder killed *before* its claim CAS left nothing behind. A
//! process killed while parked holds nothing. A stopped (not dead) process keeps its slot,
//! and peers wait for it, as they would for a slow one. Parked threads re-check at least
//! every 10 ms, so a dead peer's slot is noticed without a wake-up.
//!
//! Hostile bytes: the capacity and slot size are validated once at open and kept in the
//! handle; positions, stamps and message lengths read from shared memory are checked on
//! every use, and inconsistent words give a `Corrupt` error (or a bounded wait with a
//! timeout), never out-of-bounds access.
//!
//! # Waiting
//!
//! A blocking call first spins as its handle's [`WaitPolicy`](crate::sync::WaitPolicy)
//! says (by default the crate's adaptive policy: a budget that follows how long this
//! process's waits take, no spinning while other threads wait for the CPU; `set_wait_policy`
//! changes it per handle), then parks: it adds itself to the ring's waiter count for its side,
//! issues a SeqCst fence, looks once more, and sleeps in `FUTEX_WAIT` on the side's sequence
//! word. The other side publishes with a SeqCst read-modify-write of the stamp and then
//! reads the waiter count; only when it is non-zero does it reset it, bump the sequence
//! word and `FUTEX_WAKE` everyone registered (one system call per batch of waiters). A
//! parked thread also wakes every 10 ms by itself, because a peer that dies sends no
//! wake-up.
//!
//! # Pipes and liveness
//!
//! A [`Pipe`] is two byte rings in one segment. Each end holds an open-file-description lock
//! (`F_OFD_SETLK`) on its own byte of the segment file, through a private description; the
//! kernel drops it when the last descriptor of that description closes, whether the end
//! was dropped (in every process that inherited it by `fork`) or its processes died. An end
//! that would wait checks the peer's byte with `F_OFD_GETLK`: no pids are involved, and a
//! reused pid cannot fool it. This is Python's `Connection` semantics: close the end you do
//! not use after a fork.

pub(crate) mod ring;

#[cfg(loom)]
#[doc(hidden)]
pub mod model;

#[cfg(not(loom))]
mod bytes;
mod error;
#[cfg(not(loom))]
mod layout;
#[cfg(not(loom))]
mod ops;
#[cfg(not(loom))]
mod park;
#[cfg(not(loom))]
mod pipe;
#[cfg(not(loom))]
mod queue;
#[cfg(all(feature = "serde", not(loom)))]
mod serde;
#[cfg(not(loom))]
mod token;

#[cfg(not(loom))]
pub use bytes::ByteQueue;
pub use error::{GetError, PipeError, PutError};
#[cfg(not(loom))]
#[allow(deprecated)]
pub use park::DEFAULT_SPIN;
#[cfg(not(loom))]
pub(crate) use park::pause_at;
#[cfg(not(loom))]
pub use pipe::{Pipe, PipeEnd};
#[cfg(not(loom))]
pub use queue::Queue;
pub use ring::Point;
#[cfg(all(feature = "serde", not(loom)))]
pub use serde::SerdeQueue;
