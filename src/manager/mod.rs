//! The `multiprocessing.Manager()` side, without a manager process: [`SharedDict`] and
//! [`SharedList`] live in shared memory and every process works on them directly.
//!
//! | Python                                   | shmkit                                              |
//! |------------------------------------------|-----------------------------------------------------|
//! | `d = Manager().dict()`                   | [`SharedDict::<str, V>::create(None, capacity)`](SharedDict::create) |
//! | `d[k] = v`, `d[k]`, `del d[k]`, `k in d` | [`insert`](SharedDict::insert), [`get`](SharedDict::get), [`remove`](SharedDict::remove), [`contains_key`](SharedDict::contains_key) |
//! | `with lock: d[k] += 1`                   | [`d.update(k, 0, \|v\| v + 1)`](SharedDict::update) (no separate lock) |
//! | `dict(d)`, `len(d)`, `d.clear()`         | [`snapshot`](SharedDict::snapshot), [`len`](SharedDict::len), [`clear`](SharedDict::clear) |
//! | `l = Manager().list()`                   | [`SharedList`]: `push`, `pop`, `get`, `set`, `update`, `len`, `clear`, `snapshot` |
//! | `ns = Manager().Namespace()`             | your `#[repr(C)]` struct in a [`SharedValue`](crate::SharedValue), below |
//!
//! A Python `Manager` dict answers every access with a round trip to a server process
//! (~5 k updates/s), and `d[k] += 1` loses updates when processes interleave. Here an access
//! is a lock, a hash lookup and a copy, and `update` is one atomic read-modify-write.
//!
//! # Namespace
//!
//! A `Namespace` is a handful of named fields. Declare them as a `#[repr(C)]` Pod struct and
//! share it with [`SharedValue`](crate::SharedValue), whose lock makes multi-field updates
//! atomic:
//!
//! ```
//! use shmkit::{Element, SharedValue};
//! #[repr(C)]
//! #[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
//! struct Progress { done: u64, failed: u64, best_score: f64 }
//! impl Element for Progress { const TYPE_NAME: &'static str = "Progress"; }
//!
//! let ns = SharedValue::create(None, Progress { done: 0, failed: 0, best_score: 0.0 })?;
//! let peer = SharedValue::<Progress>::open(ns.name().unwrap())?; // another process
//! {
//!     let mut p = peer.lock()?; // ns.done += 1; ns.best_score = max(...)  — atomically
//!     p.done += 1;
//!     p.best_score = p.best_score.max(0.93);
//! }
//! assert_eq!(ns.get()?.done, 1);
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! # The dict's protocol
//!
//! **Layout** (`src/manager/layout.rs`): the segment header records kind `dict` and
//! the value type; the control block holds a record of the shape (key type, stripes, nodes,
//! buckets), the entry count, `S` *stripes* and their chains; the payload holds the values.
//! A key's bytes are hashed with the fixed [`key_hash`]; the top 32 bits pick its stripe, the
//! low bits its bucket inside the stripe. Each stripe is a small chained hash table: `buckets`
//! chain heads, `nodes` nodes (next link, hash tag, key length, key bytes; the value in the
//! payload), a free list and a never-used count. All links are 1-based node indices inside
//! the stripe, never pointers. The capacity is enforced by the shared count; each stripe has
//! room for its expected share plus six standard deviations, so a stripe fills before the
//! dict only for keys chosen to collide ([`ManagerError::StripeFull`]).
//!
//! **Locking**: every operation on one key locks exactly its stripe (a robust,
//! process-shared pthread mutex). [`snapshot`](SharedDict::snapshot) and the recount lock all
//! stripes in index order, and nothing else holds two, so there is no deadlock.
//!
//! **Crash atomicity** (undo journal, one per stripe, protected by the stripe lock):
//!
//! 1. Fill what is not yet reachable (a new node's key, tag and value) without journalling.
//! 2. Record every word the operation will change — the node, bucket, predecessor, old link,
//!    old `next`, old free-list head, old never-used count, old length; for a value overwrite,
//!    a copy of the old value — then store the journal state (`INSERT`, `REMOVE`, `VALUE`)
//!    with Release.
//! 3. Make the changes; store state `IDLE` (Release): the commit point.
//!
//! A process killed anywhere in 1–3 still "holds" the lock: the next locker gets
//! `EOWNERDEAD`, finds a non-idle journal, writes the recorded old words back (idempotent, so
//! a recoverer killed half-way leaves the same job to the next), stores `IDLE`, and marks the
//! mutex consistent. So an interrupted operation is not applied at all, and one killed after
//! its commit is fully applied. Word-sized values (`u8` … `u64`, aligned) are overwritten
//! with one atomic store and need no journal.
//!
//! **Count**: the shared entry count is incremented (reserving a place, refused at the
//! capacity) *before* an insert and decremented *after* a remove, both under the stripe lock,
//! so it is never below the entries present. A holder that dies may leave it too high; the
//! recoverer sets `needs_recount`, and the next [`len`](SharedDict::len), snapshot or insert
//! that finds the dict full recounts under all stripe locks.
//!
//! **Validation**: the shape record is copied once at open, checked against its check word
//! (FNV-1a of the record, so a single overwritten field is reported, not believed), against
//! the caller's key and value types (size, alignment, name) and against the segment's size; every node index, length and journal word read from shared memory is range-checked
//! and chains are walked at most `nodes` steps. Hostile bytes give [`ManagerError::Corrupt`],
//! never a panic or an out-of-bounds access.
//!
//! The control block starts with the magic `DCT2` (2: the record's check word); a different
//! layout gets a new magic.

pub(crate) mod dict;
mod error;
mod key;
mod layout;
mod list;
mod options;
mod stripe;

pub(crate) use dict::RecoveryStats;
pub use dict::SharedDict;
pub use error::ManagerError;
pub use key::{DictKey, key_hash};
pub use layout::{MAX_CAPACITY, MAX_KEY_LEN, MAX_STRIPES, MAX_VALUE_SIZE};
pub use list::SharedList;
pub use options::{DEFAULT_MAX_KEY_LEN, DictOptions};
