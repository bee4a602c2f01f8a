//! [`HaloArray`]: one global array split across every rank of the job in world-rank order,
//! each rank updating its own part from its neighbours' edges (a *halo*) every epoch.
//!
//! On one node the neighbour's edge is read in place from the shared window ([`NodeArray`]);
//! between nodes it travels as an MPI message at each fence, into a ghost buffer. The
//! kernel sees the same slices either way ([`Step`]), so its results are bitwise identical
//! however the job is split.

use std::ops::Range;

use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Destination, Source};

use super::{MpiError, Node, NodeArray};
use crate::shared::Element;

const TAG_TO_LOWER: i32 = 1;
const TAG_TO_UPPER: i32 = 2;
const TAG_GATHER: i32 = 3;
/// Largest single message (bytes); longer transfers are sent in pieces of this size.
const MAX_MESSAGE: usize = 1 << 30;

/// Where a neighbour's part lives, seen from this rank.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Neighbour {
    /// No neighbour: this part is at the start (or end) of the global array.
    Edge,
    /// On this node, at this node rank: read in place from the window.
    Node(usize),
    /// On another node, at this world rank: its edge arrives as a message.
    Remote(usize),
}

/// One epoch's views for the kernel of a [`HaloArray`].
#[derive(Debug)]
pub struct Step<'a, T> {
    /// The `halo` elements just before this rank's part (empty for the first part).
    pub before: &'a [T],
    /// This rank's part, as it was at the start of the epoch.
    pub own: &'a [T],
    /// The `halo` elements just after this rank's part (empty for the last part).
    pub after: &'a [T],
    /// This rank's part for the next epoch: write all of it.
    pub out: &'a mut [T],
    /// The global index range of `own` / `out`.
    pub range: Range<usize>,
}

/// A global array of `T` distributed over all ranks of the job in world-rank order, with
/// halo exchange: shared windows within a node, MPI messages between nodes.
///
/// Each epoch, [`step`](Self::step) gives this rank its part and its neighbours' edges
/// (read-only) and its next part (`&mut`); [`fence`](Self::fence) publishes the new parts
/// and brings the edges from other nodes. Both are collective (the fence over the whole job).
///
/// ```no_run
/// use shmkit::mpi::{HaloArray, Node};
/// let universe = mpi::initialize().unwrap();
/// let node = Node::new(&universe.world())?;
/// let counts = vec![1000; node.world_size()];   // every rank's part, the same on every rank
/// let mut a = HaloArray::<f64>::new(&node, &counts, 1)?;
/// for _ in 0..10 {
///     let s = a.step();
///     for (i, o) in s.out.iter_mut().enumerate() {
///         let left = if i == 0 { s.before.last() } else { s.own.get(i - 1) };
///         *o = s.own[i] + left.copied().unwrap_or(0.0) + 1.0;
///     }
///     a.fence()?;
/// }
/// let all = a.gather(0)?; // Some(whole array) on rank 0
/// # Ok::<(), shmkit::mpi::MpiError>(())
/// ```
pub struct HaloArray<'n, T: Element> {
    local: NodeArray<'n, T>,
    comm: SimpleCommunicator,
    counts: Vec<usize>,
    offset: usize,
    halo: usize,
    lower: Neighbour,
    upper: Neighbour,
    ghost_lower: Vec<T>,
    ghost_upper: Vec<T>,
}

impl<T: Element> std::fmt::Debug for HaloArray<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaloArray")
            .field("type", &T::TYPE_NAME)
            .field("range", &self.range())
            .field("halo", &self.halo)
            .field("lower", &self.lower)
            .field("upper", &self.upper)
            .finish()
    }
}

/// FNV-1a over the words, to compare collective arguments across ranks cheaply.
fn fingerprint(words: impl IntoIterator<Item = u64>) -> u64 {
    words.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, w| (h ^ w).wrapping_mul(0x0100_0000_01b3))
}

impl<'n, T: Element> HaloArray<'n, T> {
    /// Make the array: world rank `r` owns `counts[r]` consecutive elements, all zero;
    /// neighbours' edges are `halo` elements wide. Every rank must pass the same `counts`
    /// and `halo` (checked), and every part must hold at least `max(halo, 1)` elements.
    /// Collective over the whole job.
    pub fn new(node: &'n Node, counts: &[usize], halo: usize) -> Result<Self, MpiError> {
        let size = node.world_size();
        let me = node.world_rank();
        let words =
            counts.iter().map(|&c| c as u64).chain([counts.len() as u64, halo as u64, T::TYPE_NAME.len() as u64]);
        let mine = fingerprint(words.chain(T::TYPE_NAME.bytes().map(u64::from)));
        let comm = node.world_comm().duplicate();
        let (mut lo, mut hi) = (0u64, 0u64);
        comm.all_reduce_into(&mine, &mut lo, mpi::collective::SystemOperation::min());
        comm.all_reduce_into(&mine, &mut hi, mpi::collective::SystemOperation::max());
        if lo != hi {
            return Err(MpiError::Mismatch { what: "HaloArray::new (counts, halo or element type)" });
        }
        if counts.len() != size {
            return Err(MpiError::BadCounts { reason: format!("{} counts for {size} ranks", counts.len()) });
        }
        if let Some((rank, &c)) = counts.iter().enumerate().find(|&(_, &c)| c < halo.max(1)) {
            return Err(MpiError::BadCounts {
                reason: format!("rank {rank} would own {c} elements, fewer than the halo width {}", halo.max(1)),
            });
        }
        let place = |r: Option<usize>| match r {
            None => Neighbour::Edge,
            Some(r) => node.node_rank_of(r).map_or(Neighbour::Remote(r), Neighbour::Node),
        };
        let lower = place(me.checked_sub(1));
        let upper = place(Some(me + 1).filter(|&r| r < size));
        let ghost = |n: Neighbour| if matches!(n, Neighbour::Remote(_)) { vec![T::zeroed(); halo] } else { Vec::new() };
        Ok(HaloArray {
            local: NodeArray::new(node, counts[me])?,
            comm,
            offset: counts[..me].iter().sum(),
            counts: counts.to_vec(),
            halo,
            ghost_lower: ghost(lower),
            ghost_upper: ghost(upper),
            lower,
            upper,
        })
    }

    /// The global index range this rank owns.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.local.len()
    }

    /// Length of the whole array.
    pub fn global_len(&self) -> usize {
        self.counts.iter().sum()
    }

    /// Number of fences since creation.
    pub fn epoch(&self) -> u64 {
        self.local.epoch()
    }

    /// Whether the lower / upper neighbour's edge travels as a message (another node).
    pub fn remote_neighbours(&self) -> (bool, bool) {
        (matches!(self.lower, Neighbour::Remote(_)), matches!(self.upper, Neighbour::Remote(_)))
    }

    /// This rank's part as of this epoch.
    pub fn own(&self) -> &[T] {
        self.local.front().own()
    }

    /// This epoch's views: the neighbours' edges, this rank's part, and its next part.
    pub fn step(&mut self) -> Step<'_, T> {
        let range = self.range();
        let halo = self.halo;
        let (front, out) = self.local.split_mut();
        let before = match self.lower {
            Neighbour::Edge => &[][..],
            Neighbour::Node(r) => front.part(r).map_or(&[][..], |p| &p[p.len() - halo..]),
            Neighbour::Remote(_) => &self.ghost_lower[..],
        };
        let after = match self.upper {
            Neighbour::Edge => &[][..],
            Neighbour::Node(r) => front.part(r).map_or(&[][..], |p| &p[..halo]),
            Neighbour::Remote(_) => &self.ghost_upper[..],
        };
        Step { before, own: front.own(), after, out, range }
    }

    /// End the epoch: send this rank's new edges to neighbours on other nodes and receive
    /// theirs, then fence the node's windows (the new parts become readable). Collective over
    /// the whole job.
    pub fn fence(&mut self) -> Result<(), MpiError> {
        let halo = self.halo;
        let next: &[T] = self.local.back_mut();
        let (first, last) = (&next[..halo], &next[next.len() - halo..]);
        let (ghost_lower, ghost_upper) = (&mut self.ghost_lower, &mut self.ghost_upper);
        let comm = &self.comm;
        mpi::request::scope(|scope| {
            let mut pending = Vec::with_capacity(4);
            if let Neighbour::Remote(r) = self.lower {
                let p = comm.process_at_rank(r as i32);
                pending.push(p.immediate_receive_into_with_tag(scope, bytes_mut(ghost_lower), TAG_TO_UPPER));
                pending.push(p.immediate_send_with_tag(scope, bytes(first), TAG_TO_LOWER));
            }
            if let Neighbour::Remote(r) = self.upper {
                let p = comm.process_at_rank(r as i32);
                pending.push(p.immediate_receive_into_with_tag(scope, bytes_mut(ghost_upper), TAG_TO_LOWER));
                pending.push(p.immediate_send_with_tag(scope, bytes(last), TAG_TO_UPPER));
            }
            let mut polls = 0u32;
            while !pending.is_empty() {
                pending = pending.into_iter().filter_map(|request| request.test().err()).collect();
                polls = polls.saturating_add(1);
                back_off(polls);
            }
        });
        self.local.fence()
    }

    /// Copy the whole array (as of this epoch) to world rank `root`: `Some` there, `None`
    /// elsewhere. Collective over the whole job. Meant for checks and output, not per step.
    pub fn gather(&self, root: usize) -> Result<Option<Vec<T>>, MpiError> {
        let size = self.counts.len();
        if root >= size {
            return Err(MpiError::NoSuchRank { rank: root, size });
        }
        let me = self.comm.rank() as usize;
        if me != root {
            let p = self.comm.process_at_rank(root as i32);
            for piece in bytes(self.own()).chunks(MAX_MESSAGE) {
                p.send_with_tag(piece, TAG_GATHER);
            }
            return Ok(None);
        }
        let mut all = vec![T::zeroed(); self.global_len()];
        let mut start = 0;
        for (r, &count) in self.counts.iter().enumerate() {
            let part = &mut all[start..start + count];
            if r == me {
                part.copy_from_slice(self.own());
            } else {
                let p = self.comm.process_at_rank(r as i32);
                for piece in bytes_mut(part).chunks_mut(MAX_MESSAGE) {
                    p.receive_into_with_tag(piece, TAG_GATHER);
                }
            }
            start += count;
        }
        Ok(Some(all))
    }
}

/// Waiting for halo messages: spin first (a neighbour's edge usually arrives within
/// microseconds), then yield, then sleep briefly, so a rank waiting for a slower neighbour
/// leaves the CPU to it when ranks share cores (`MPI_Wait` would spin at full speed).
fn back_off(polls: u32) {
    if polls < 200 {
        std::hint::spin_loop();
    } else if polls < 2_000 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(std::time::Duration::from_micros(20));
    }
}

fn bytes<T: Element>(s: &[T]) -> &[u8] {
    bytemuck::cast_slice(s)
}

fn bytes_mut<T: Element>(s: &mut [T]) -> &mut [u8] {
    bytemuck::cast_slice_mut(s)
}
