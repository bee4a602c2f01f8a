//! [`NodeArray`]: an array shared by the ranks of a node through two MPI-3 shared-memory
//! windows, read and written in fenced epochs (bulk-synchronous, double-buffered).
//!
//! # Why this is sound
//!
//! The array has two buffers, *front* and *back*, each a window of which every rank owns
//! one part. During an epoch every rank may read every part of the front and write its own
//! part of the back, and nothing else. [`NodeArray::fence`] ends the epoch: `MPI_Win_sync`
//! (all of this rank's writes are visible), a barrier private to this array, `MPI_Win_sync`
//! again, then front and back swap. So:
//!
//! - no rank writes a buffer that another rank reads in the same epoch (front is read-only,
//!   the back part is written by its owner only), and no two `&mut` overlap;
//! - all ranks agree which buffer is the front: the `k`-th fence of one rank can only pass
//!   once every rank of the node entered its own `k`-th fence (the barrier's rounds complete
//!   in order, and nobody else uses it), so while a rank runs epoch `k`, the others run epoch
//!   `k` or wait in a fence next to it; the front of epoch `k` is buffer `k % 2` for all;
//! - views borrow the array and `fence` takes `&mut self`: safe code cannot hold a view
//!   across a fence, so it cannot read a part that a neighbour writes in the next epoch.
//!
//! # The barrier
//!
//! The fence's barrier is shmkit's own process-shared [`Barrier`] (the one pool workers
//! meet at), placed in a third, tiny shared window: it sleeps on a futex instead of
//! spinning as `MPI_Barrier` does, so ranks that share cores with other work (or with each
//! other) do not steal the CPU from the rank still computing. Its rounds are acquire/release
//! synchronisation, so every write before the fence happens-before every read after it.
//! Nodes of more than 65 535 ranks (the barrier's limit) use `MPI_Barrier` on a communicator
//! private to the array instead.

use std::marker::PhantomData;
use std::ptr::NonNull;

use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives};

use super::sys::SharedWin;
use super::{MpiError, Node};
use crate::shared::Element;
use crate::sync::Barrier;

/// An array shared by the ranks of one [`Node`]: each rank owns a part (its own length),
/// in two buffers. Made by [`NodeArray::new`] (collective over the node).
///
/// Per epoch (between two [`fence`](Self::fence)s):
///
/// | buffer | own part | a neighbour's part |
/// |---|---|---|
/// | front | `&[T]` | `&[T]` |
/// | back | `&mut [T]` | — |
///
/// The same view kinds as [`SharedArray`](crate::SharedArray) gives: the own part as
/// `&mut [T]` (like a `claim_mut`), everything else as `&[T]` (like a `claim`), with the
/// fence in place of the claim.
///
/// ```no_run
/// use shmkit::mpi::{Node, NodeArray};
/// let universe = mpi::initialize().unwrap();
/// let node = Node::new(&universe.world())?;
/// let mut a = NodeArray::<f64>::new(&node, 1000)?; // this rank's part: 1000 elements
/// a.back_mut().fill(node.node_rank() as f64);      // write my part of the back buffer
/// a.fence()?;                                        // publish: back becomes front
/// let left = a.front().part((node.node_rank() + 1) % node.node_size())?;
/// assert_eq!(left.len(), 1000);                      // a neighbour's part, zero copy
/// # Ok::<(), shmkit::mpi::MpiError>(())
/// ```
#[must_use = "dropping it frees its windows, a collective call over the node"]
pub struct NodeArray<'n, T: Element> {
    node: &'n Node,
    comm: SimpleCommunicator,
    /// Front/back buffers, then the window holding the barrier (on node rank 0).
    wins: [SharedWin; 3],
    /// The fence's futex barrier in `wins[2]`, or `None` to use `MPI_Barrier` on `comm`.
    barrier: Option<NonNull<Barrier>>,
    /// Base of each node rank's part, per buffer.
    parts: [Vec<NonNull<T>>; 2],
    lens: Vec<usize>,
    epoch: u64,
    _t: PhantomData<T>,
}

// SAFETY: `&NodeArray` only gives `&[T]` views of the front (no MPI calls, no writes), and
// `T: Sync` (Element); the raw part pointers point into window memory that stays mapped while
// the array lives. (Not `Send`: its fence calls MPI, which rsmpi initialises for one thread.)
unsafe impl<T: Element> Sync for NodeArray<'_, T> {}

impl<T: Element> std::fmt::Debug for NodeArray<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeArray")
            .field("type", &T::TYPE_NAME)
            .field("lens", &self.lens)
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl<'n, T: Element> NodeArray<'n, T> {
    /// Allocate the array: this rank's part holds `len` elements (ranks may differ), both
    /// buffers zero-filled. Collective over the node: every rank of it must call `new` in the
    /// same order relative to other collective shmkit calls on the node.
    pub fn new(node: &'n Node, len: usize) -> Result<Self, MpiError> {
        let elem = std::mem::size_of::<T>();
        let bytes = len.checked_mul(elem).ok_or(MpiError::TooLarge { bytes: usize::MAX })?;
        // Private communicator: this array's fences are the only collectives on it.
        let comm = node.node_comm().duplicate();
        // SAFETY: collective over `comm` (this constructor is collective over the node, and
        // `comm` is its fresh duplicate), which is a split of a shared-memory communicator.
        let (w0, b0) = unsafe { SharedWin::allocate(&comm, bytes) }?;
        // SAFETY: as above, the next collective on `comm`.
        let (w1, b1) = unsafe { SharedWin::allocate(&comm, bytes) }?;
        let parties = u16::try_from(node.node_size()).ok().filter(|&n| n > 1);
        let barrier_bytes = if node.node_rank() == 0 { std::mem::size_of::<Barrier>() } else { 0 };
        // SAFETY: as above, the next collective on `comm`.
        let (w2, _) = unsafe { SharedWin::allocate(&comm, barrier_bytes) }?;
        for base in [b0, b1] {
            if len > 0 {
                // SAFETY: MPI gave this rank `bytes` bytes at `base`; nobody reads them before
                // the barrier below, and zero bytes are a valid `T` (Pod).
                unsafe { std::ptr::write_bytes(base, 0, bytes) };
            }
        }
        let mut array = NodeArray {
            node,
            comm,
            wins: [w0, w1, w2],
            barrier: None,
            parts: [Vec::new(), Vec::new()],
            lens: Vec::new(),
            epoch: 0,
            _t: PhantomData,
        };
        let mut lens = vec![0u64; node.node_size()];
        array.comm.all_gather_into(&(len as u64), &mut lens[..]);
        array.lens = lens.into_iter().map(|l| l as usize).collect();
        for (buf, win) in array.wins[..2].iter().enumerate() {
            for (rank, &want) in array.lens.iter().enumerate() {
                // SAFETY: `rank` < node size = the window communicator's size.
                let (got, base) = unsafe { win.query(rank) }?;
                if got != want * elem || (want > 0 && base.as_ptr().align_offset(std::mem::align_of::<T>()) != 0) {
                    return Err(MpiError::BadWindow { rank, bytes: got, expected: want * elem });
                }
                // An empty part may have a null or unaligned base: never dereferenced.
                array.parts[buf].push(if want == 0 { NonNull::dangling() } else { base.cast::<T>() });
            }
        }
        // SAFETY: rank 0 is in the window's communicator.
        let (got, base) = unsafe { array.wins[2].query(0) }?;
        let barrier = base.cast::<Barrier>();
        if got != std::mem::size_of::<Barrier>() || barrier.as_ptr().align_offset(std::mem::align_of::<Barrier>()) != 0
        {
            return Err(MpiError::BadWindow { rank: 0, bytes: got, expected: std::mem::size_of::<Barrier>() });
        }
        if let (Some(parties), 0) = (parties, node.node_rank()) {
            // SAFETY: rank 0's part of the barrier window: in bounds and aligned (checked just
            // above), and nobody else touches it before the MPI barrier in `fence_only` below.
            unsafe { barrier.as_ptr().write(Barrier::new(parties)) };
        }
        // The zeroes and the barrier are visible to every rank before anyone reads them.
        array.fence_only()?;
        array.barrier = parties.map(|_| barrier);
        Ok(array)
    }

    /// The node this array lives on.
    pub fn node(&self) -> &'n Node {
        self.node
    }

    /// Length of this rank's part.
    pub fn len(&self) -> usize {
        self.lens[self.node.node_rank()]
    }

    /// Whether this rank's part is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Length of each node rank's part, in node-rank order.
    pub fn part_lens(&self) -> &[usize] {
        &self.lens
    }

    /// Number of fences since creation. The front is buffer `epoch % 2` on every rank.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    fn front_buf(&self) -> usize {
        (self.epoch % 2) as usize
    }

    /// Read-only view of the front buffer (every part of it) for this epoch.
    pub fn front(&self) -> Front<'_, T> {
        Front { ptrs: &self.parts[self.front_buf()], lens: &self.lens, own: self.node.node_rank() }
    }

    /// This rank's part of the back buffer, to write this epoch; it becomes this rank's
    /// part of the front at the next [`fence`](Self::fence). It still holds what was
    /// written two epochs ago (zeroes at first).
    pub fn back_mut(&mut self) -> &mut [T] {
        self.split_mut().1
    }

    /// Both at once: the front (read-only, all parts) and this rank's back part (`&mut`).
    pub fn split_mut(&mut self) -> (Front<'_, T>, &mut [T]) {
        let back = 1 - self.front_buf();
        let me = self.node.node_rank();
        let this: &Self = self;
        // SAFETY: this rank's part of the back buffer: in bounds and aligned (checked in
        // `new`), written by no other rank this epoch and read by none (module docs); the
        // caller's `&mut self` borrow, which the result keeps, makes this the only view of it;
        // the front views are of the other window, so they do not overlap it.
        let own = unsafe { std::slice::from_raw_parts_mut(this.parts[back][me].as_ptr(), this.lens[me]) };
        (this.front(), own)
    }

    /// End the epoch: make this rank's back writes visible to the node, wait for every rank
    /// of the node, and swap front and back. Collective over the node.
    pub fn fence(&mut self) -> Result<(), MpiError> {
        self.fence_only()?;
        self.epoch += 1;
        Ok(())
    }

    fn fence_only(&mut self) -> Result<(), MpiError> {
        for w in &self.wins {
            w.sync()?;
        }
        match self.barrier {
            // SAFETY: `ptr` is the Barrier that node rank 0 wrote into the barrier window
            // before the MPI barrier at the end of `new`; the window stays mapped while `self`
            // lives; a Barrier is made to be shared as `&Barrier` between processes (atomics
            // only, ShmSafe), and nobody writes it by other means.
            Some(ptr) => unsafe { ptr.as_ref() }.wait().map(drop).map_err(|source| MpiError::Fence { source })?,
            None => self.comm.barrier(),
        }
        for w in &self.wins {
            w.sync()?;
        }
        Ok(())
    }
}

impl<T: Element> Drop for NodeArray<'_, T> {
    /// Frees the windows: collective over the node, like every MPI window free. While
    /// panicking the windows are leaked instead (a collective call could hang on ranks that
    /// are not panicking; the job is going down anyway).
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        for w in &mut self.wins {
            // SAFETY: collective: every rank drops its array in the same program order (the
            // same rule as for creating it); no view outlives `self`.
            let _ = unsafe { w.free() };
        }
    }
}

/// The front buffer of a [`NodeArray`] during one epoch: every rank's part, read-only.
pub struct Front<'a, T> {
    ptrs: &'a [NonNull<T>],
    lens: &'a [usize],
    own: usize,
}

// SAFETY: a `Front` is a set of `&[T]` views of memory nobody writes while it lives (module
// docs); sending or sharing it is sending or sharing `&[T]`, sound for `T: Sync`.
unsafe impl<T: Sync> Send for Front<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for Front<'_, T> {}

impl<T> Clone for Front<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Front<'_, T> {}

impl<T> std::fmt::Debug for Front<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Front").field("lens", &self.lens).field("own", &self.own).finish()
    }
}

impl<'a, T> Front<'a, T> {
    /// Node rank `rank`'s part.
    pub fn part(&self, rank: usize) -> Result<&'a [T], MpiError> {
        match (self.ptrs.get(rank), self.lens.get(rank)) {
            // SAFETY: `ptr` is the base MPI reported for `rank`'s part of the front window,
            // checked in `NodeArray::new` to hold `len` elements and be aligned for T; the
            // memory stays mapped while the array (borrowed for 'a) lives; T is Pod (Element),
            // so any bytes are a valid T; and nobody writes the front during the epoch, which
            // cannot end while this borrow lives (`fence` takes `&mut self`; module docs).
            (Some(ptr), Some(&len)) => Ok(unsafe { std::slice::from_raw_parts(ptr.as_ptr(), len) }),
            _ => Err(MpiError::NoSuchRank { rank, size: self.lens.len() }),
        }
    }

    /// This rank's own part.
    pub fn own(&self) -> &'a [T] {
        self.part(self.own).unwrap_or(&[])
    }

    /// Number of parts (ranks in the node).
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    /// Whether there are no parts (never: a node has at least one rank).
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }
}
