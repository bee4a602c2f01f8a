//! [`Node`]: the ranks of an MPI job that share memory, and how the job is split into nodes.

use std::num::NonZeroUsize;

use mpi::topology::{Color, Communicator, SimpleCommunicator};
use mpi::traits::CommunicatorCollectives;

use super::MpiError;

/// How the ranks of a job are grouped into nodes, i.e. which ranks share windows.
///
/// Read from the environment variable [`Split::ENV`] (`SHMKIT_MPI_SPLIT`) by
/// [`Node::new`]. Groups never span real machines: every split refines
/// `MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)`.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// All ranks on one machine form one node (the default; value `shared`).
    Shared,
    /// Every rank is its own node (value `rank`): all halos travel as MPI messages, as
    /// between machines. Lets a single machine test the cross-node path.
    Rank,
    /// Groups of this many consecutive ranks of a machine (value: the number), to test
    /// a mix of shared windows and messages on one machine.
    Ranks(NonZeroUsize),
}

impl Split {
    /// The environment variable [`Split::from_env`] reads.
    pub const ENV: &'static str = "SHMKIT_MPI_SPLIT";

    /// Parse `shared`, `rank`, or a positive number of ranks per node.
    pub fn parse(value: &str) -> Result<Split, MpiError> {
        match value.trim() {
            "" | "shared" | "node" => Ok(Split::Shared),
            "rank" => Ok(Split::Rank),
            n => match n.parse::<usize>().ok().and_then(NonZeroUsize::new) {
                Some(n) => Ok(Split::Ranks(n)),
                None => Err(MpiError::BadSplit { value: value.to_owned() }),
            },
        }
    }

    /// The split that `SHMKIT_MPI_SPLIT` asks for; [`Split::Shared`] when it is unset.
    pub fn from_env() -> Result<Split, MpiError> {
        match std::env::var(Self::ENV) {
            Ok(v) => Split::parse(&v),
            Err(std::env::VarError::NotPresent) => Ok(Split::Shared),
            Err(std::env::VarError::NotUnicode(v)) => {
                Err(MpiError::BadSplit { value: v.to_string_lossy().into_owned() })
            }
        }
    }

    /// The name used in `SHMKIT_MPI_SPLIT` and in reports: `shared`, `rank` or the number.
    pub fn name(&self) -> String {
        match self {
            Split::Shared => "shared".into(),
            Split::Rank => "rank".into(),
            Split::Ranks(n) => n.to_string(),
        }
    }
}

/// This rank's view of the job: its rank among all ranks (the *world*, the communicator it
/// was made from) and the group of ranks it shares memory with (its *node*).
///
/// Holds private duplicates of both communicators, so nothing shmkit sends can match a
/// message or collective of yours. Making a `Node` is collective over the communicator.
/// Drop every [`NodeArray`](super::NodeArray) and [`HaloArray`](super::HaloArray) made
/// from it before `mpi::environment::Universe` drops (they borrow the `Node`, so drop the
/// `Node` first).
pub struct Node {
    world: SimpleCommunicator,
    node: SimpleCommunicator,
    split: Split,
    /// World ranks of the node's members, in node-rank order (ascending world rank).
    members: Vec<usize>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("world_rank", &self.world_rank())
            .field("world_size", &self.world_size())
            .field("node_rank", &self.node_rank())
            .field("members", &self.members)
            .field("split", &self.split)
            .finish()
    }
}

impl Node {
    /// Split `world` into nodes as `SHMKIT_MPI_SPLIT` says (default: by machine).
    /// Collective over `world`.
    pub fn new(world: &impl Communicator) -> Result<Node, MpiError> {
        Self::with_split(world, Split::from_env()?)
    }

    /// Split `world` into nodes with an explicit [`Split`]. Collective over `world`; every
    /// rank should pass the same split (ranks that disagree still get consistent, valid
    /// groups, just not the ones intended).
    pub fn with_split(world: &impl Communicator, split: Split) -> Result<Node, MpiError> {
        let world = world.duplicate();
        // Key = world rank: node ranks follow world order, so world-rank neighbours on the same
        // node are node-rank neighbours.
        let machine = world.split_shared(world.rank());
        let group = |n: usize| {
            let color = i32::try_from(machine.rank() as usize / n).unwrap_or(i32::MAX);
            machine.split_by_color_with_key(Color::with_value(color), machine.rank())
        };
        let node = match split {
            Split::Shared => Some(machine),
            Split::Rank => group(1),
            Split::Ranks(n) => group(n.get()),
        }
        .ok_or(MpiError::Call { op: "MPI_Comm_split", code: -1 })?;
        let mut members = vec![0i32; node.size() as usize];
        node.all_gather_into(&world.rank(), &mut members[..]);
        let members = members.into_iter().map(|r| r as usize).collect();
        Ok(Node { world, node, split, members })
    }

    /// This rank's rank in the world communicator.
    pub fn world_rank(&self) -> usize {
        self.world.rank() as usize
    }

    /// Number of ranks in the world communicator.
    pub fn world_size(&self) -> usize {
        self.world.size() as usize
    }

    /// This rank's rank in its node.
    pub fn node_rank(&self) -> usize {
        self.node.rank() as usize
    }

    /// Number of ranks in this node.
    pub fn node_size(&self) -> usize {
        self.members.len()
    }

    /// The world ranks of this node's members, in node-rank order.
    pub fn members(&self) -> &[usize] {
        &self.members
    }

    /// The node rank of world rank `world_rank` if it is in this node.
    pub fn node_rank_of(&self, world_rank: usize) -> Option<usize> {
        self.members.binary_search(&world_rank).ok()
    }

    /// Number of nodes in the job (collective over the world).
    pub fn node_count(&self) -> usize {
        let leader = i32::from(self.node_rank() == 0);
        let mut count = 0i32;
        self.world.all_reduce_into(&leader, &mut count, mpi::collective::SystemOperation::sum());
        count as usize
    }

    /// How this job was split.
    pub fn split(&self) -> Split {
        self.split
    }

    /// The private world duplicate (for a new private duplicate of it).
    pub(crate) fn world_comm(&self) -> &SimpleCommunicator {
        &self.world
    }

    /// The private node communicator.
    pub(crate) fn node_comm(&self) -> &SimpleCommunicator {
        &self.node
    }
}
