//! The dict's shared-memory layout: the structs, and the geometry every offset comes from.
//!
//! Control block (offsets from its start, which is 64-byte aligned):
//!
//! | offset        | what                                                          |
//! |---------------|---------------------------------------------------------------|
//! | 0             | [`MetaFixed`] (128 bytes): written once by the creator        |
//! | 128           | [`MetaLive`] (64 bytes): the entry count and recovery stats   |
//! | 192           | `stripes` × `stripe_stride`: [`StripeHead`], [`Journal`], undo value |
//! | `off_buckets` | `stripes` × `buckets` × `u32`: chain heads (node index + 1, 0 = empty) |
//! | `off_nodes`   | `stripes` × `nodes` × `node_stride`: [`NodeHead`], then the key bytes |
//!
//! The payload is the values: `stripes × nodes` elements of `V`, the value of node `i`
//! (1-based) of stripe `s` at index `s × nodes + i − 1`. The segment header records `V` as
//! the element type, so opening with another value type fails in the segment layer.

use std::sync::atomic::{AtomicU32, AtomicU64};

use crate::shared::fnv1a;
use crate::sync::RawMutex;

pub(crate) const DICT_MAGIC: u32 = u32::from_le_bytes(*b"DCT2");
pub(crate) const KEY_FIXED: u32 = 1;
pub(crate) const KEY_VARIABLE: u32 = 2;
/// Most stripes a dict may have (a snapshot holds all their locks at once).
pub const MAX_STRIPES: u32 = 1024;
/// Longest variable-length key a dict may be created for.
pub const MAX_KEY_LEN: usize = 4096;
/// Largest capacity a dict may be created with.
pub const MAX_CAPACITY: u64 = 1 << 31;
/// Largest value type a dict may hold, in bytes (each stripe's journal keeps a copy of one).
pub const MAX_VALUE_SIZE: usize = 1 << 20;
pub(crate) const KEY_NAME_LEN: usize = 56;

/// Immutable after creation; read once by each opener and validated.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct MetaFixed {
    pub magic: u32,
    pub key_kind: u32,
    pub key_cap: u32,
    pub stripes: u32,
    pub nodes: u32,
    pub buckets: u32,
    pub stripe_stride: u32,
    pub node_stride: u32,
    pub capacity: u64,
    pub value_size: u32,
    pub value_align: u32,
    pub key_name: [u8; KEY_NAME_LEN],
    /// FNV-1a of this record with `check` zero: a field a peer overwrote fails it at open.
    pub check: u64,
    pub reserved: [u8; 16],
}

const _: () = assert!(std::mem::size_of::<MetaFixed>() == 128);

/// Shared counters, on their own cache line.
#[repr(C)]
pub(crate) struct MetaLive {
    /// Entries, counting reservations of inserts in flight (see the module docs).
    pub total: AtomicU64,
    /// Non-zero after an owner died: `total` may be too high until the next recount.
    pub needs_recount: AtomicU32,
    pub _pad: u32,
    /// Locks acquired from a dead owner.
    pub owner_died: AtomicU64,
    /// Half-done operations rolled back.
    pub rollbacks: AtomicU64,
}

pub(crate) const META_LIVE_OFF: usize = 128;
pub(crate) const STRIPES_OFF: usize = 192;

/// The start of each stripe: its lock and the words the lock protects.
#[repr(C)]
pub(crate) struct StripeHead {
    pub lock: RawMutex,
    /// Entries in the stripe.
    pub len: AtomicU32,
    /// First node of the free list (1-based, 0 = empty).
    pub free_head: AtomicU32,
    /// Nodes `1..=fresh` have been handed out at least once.
    pub fresh: AtomicU32,
    /// The journal's state: [`IDLE`] or the operation in flight.
    pub state: AtomicU32,
}

/// Journal states.
pub(crate) const IDLE: u32 = 0;
pub(crate) const INSERT: u32 = 1;
pub(crate) const REMOVE: u32 = 2;
pub(crate) const VALUE: u32 = 3;

/// What an operation in flight will change, written before the first change (undo log).
#[repr(C)]
pub(crate) struct Journal {
    pub node: AtomicU32,
    pub bucket: AtomicU32,
    /// The node whose `next` links to `node` (0: the bucket head does).
    pub prev: AtomicU32,
    pub old_link: AtomicU32,
    pub old_next: AtomicU32,
    pub old_free: AtomicU32,
    pub old_fresh: AtomicU32,
    pub old_len: AtomicU32,
}

/// The fixed part of a node; `key_cap` key bytes follow (rounded up to 16).
#[repr(C)]
pub(crate) struct NodeHead {
    /// Next node of the chain or free list (1-based, 0 = end).
    pub next: AtomicU32,
    /// Hash tag, to skip most key comparisons.
    pub tag: AtomicU32,
    pub key_len: AtomicU32,
    pub _pad: AtomicU32,
}

fn round_up(x: usize, to: usize) -> Option<usize> {
    x.checked_add(to - 1).map(|v| v / to * to)
}

/// Every size and offset of one dict, derived from a few numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub key_fixed: bool,
    pub key_cap: u32,
    pub stripes: u32,
    pub nodes: u32,
    pub buckets: u32,
    pub capacity: u64,
    pub value_size: usize,
    pub value_align: usize,
    pub journal_off: usize,
    pub jvalue_off: usize,
    pub stripe_stride: usize,
    pub node_stride: usize,
    pub off_buckets: usize,
    pub off_nodes: usize,
    pub control_len: usize,
}

/// The numbers a geometry is derived from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub key_fixed: bool,
    pub key_cap: u32,
    pub stripes: u32,
    pub nodes: u32,
    pub buckets: u32,
    pub capacity: u64,
    pub value_size: usize,
    pub value_align: usize,
}

impl Geometry {
    /// Derive and check the geometry of `shape`.
    pub(crate) fn new(s: Shape) -> Result<Geometry, String> {
        if !(1..=MAX_STRIPES).contains(&s.stripes) {
            return Err(format!("{} stripes (1 to {MAX_STRIPES} allowed)", s.stripes));
        }
        if s.nodes == 0 || s.nodes > u32::MAX / 2 {
            return Err(format!("{} nodes per stripe", s.nodes));
        }
        if !s.buckets.is_power_of_two() || s.buckets > 1 << 30 {
            return Err(format!("{} buckets per stripe (a power of two is required)", s.buckets));
        }
        if s.key_cap as usize > MAX_KEY_LEN {
            return Err(format!("maximum key length {} (at most {MAX_KEY_LEN})", s.key_cap));
        }
        let total_nodes = u64::from(s.stripes) * u64::from(s.nodes);
        if s.capacity == 0 || s.capacity > total_nodes || s.capacity > MAX_CAPACITY {
            return Err(format!("capacity {} for {total_nodes} nodes", s.capacity));
        }
        if !s.value_align.is_power_of_two()
            || !s.value_size.is_multiple_of(s.value_align)
            || s.value_size > MAX_VALUE_SIZE
        {
            return Err(format!("value size {} / alignment {}", s.value_size, s.value_align));
        }
        let too_big = || "the dict does not fit in the address space".to_owned();
        let journal_off = round_up(std::mem::size_of::<StripeHead>(), 8).ok_or_else(too_big)?;
        let jvalue_off =
            round_up(journal_off + std::mem::size_of::<Journal>(), s.value_align.max(8)).ok_or_else(too_big)?;
        let stripe_stride = round_up(jvalue_off + s.value_size, 64).ok_or_else(too_big)?;
        let node_stride = std::mem::size_of::<NodeHead>() + round_up(s.key_cap as usize, 16).ok_or_else(too_big)?;
        let stripes = s.stripes as usize;
        let off_buckets = STRIPES_OFF.checked_add(stripes * stripe_stride).ok_or_else(too_big)?;
        let buckets_len = (stripes as u64 * u64::from(s.buckets)).checked_mul(4).ok_or_else(too_big)?;
        let off_nodes = round_up(
            off_buckets.checked_add(usize::try_from(buckets_len).map_err(|_| too_big())?).ok_or_else(too_big)?,
            64,
        )
        .ok_or_else(too_big)?;
        let nodes_len =
            usize::try_from(total_nodes).ok().and_then(|n| n.checked_mul(node_stride)).ok_or_else(too_big)?;
        let control_len = off_nodes.checked_add(nodes_len).ok_or_else(too_big)?;
        if control_len > isize::MAX as usize / 2 {
            return Err(too_big());
        }
        Ok(Geometry {
            key_fixed: s.key_fixed,
            key_cap: s.key_cap,
            stripes: s.stripes,
            nodes: s.nodes,
            buckets: s.buckets,
            capacity: s.capacity,
            value_size: s.value_size,
            value_align: s.value_align,
            journal_off,
            jvalue_off,
            stripe_stride,
            node_stride,
            off_buckets,
            off_nodes,
            control_len,
        })
    }

    /// The sizing policy: `capacity` entries in `stripes` stripes (default: up to 64, at
    /// least 16 entries each), each with room for the expected share plus six standard
    /// deviations plus 8 (never more than `capacity`), so that a stripe overflows before the
    /// dict is full only for keys chosen to collide. Buckets: the next power of two.
    pub(crate) fn plan(
        capacity: u64,
        stripes: Option<u32>,
        key_fixed: bool,
        key_cap: u32,
        value_size: usize,
        value_align: usize,
    ) -> Result<Geometry, String> {
        if capacity == 0 || capacity > MAX_CAPACITY {
            return Err(format!("capacity {capacity} (1 to {MAX_CAPACITY} allowed)"));
        }
        let stripes = match stripes {
            Some(s) => s,
            None => {
                let want = (capacity / 16).clamp(1, 64) as u32;
                1 << (31 - want.leading_zeros())
            }
        };
        if !(1..=MAX_STRIPES).contains(&stripes) {
            return Err(format!("{stripes} stripes (1 to {MAX_STRIPES} allowed)"));
        }
        let share = capacity.div_ceil(u64::from(stripes));
        let margin = (6.0 * (share as f64).sqrt()).ceil() as u64 + 8;
        let nodes = (share + margin).min(capacity);
        let nodes = u32::try_from(nodes).map_err(|_| format!("capacity {capacity}"))?;
        let buckets = nodes.checked_next_power_of_two().ok_or_else(|| format!("capacity {capacity}"))?;
        Geometry::new(Shape { key_fixed, key_cap, stripes, nodes, buckets, capacity, value_size, value_align })
    }

    /// The creator's record of this geometry.
    pub(crate) fn meta(&self, key_name: &str) -> MetaFixed {
        let mut name = [0u8; KEY_NAME_LEN];
        let n = key_name.len().min(KEY_NAME_LEN);
        name[..n].copy_from_slice(&key_name.as_bytes()[..n]);
        let mut m = MetaFixed {
            magic: DICT_MAGIC,
            key_kind: if self.key_fixed { KEY_FIXED } else { KEY_VARIABLE },
            key_cap: self.key_cap,
            stripes: self.stripes,
            nodes: self.nodes,
            buckets: self.buckets,
            stripe_stride: self.stripe_stride as u32,
            node_stride: self.node_stride as u32,
            capacity: self.capacity,
            value_size: self.value_size as u32,
            value_align: self.value_align as u32,
            key_name: name,
            check: 0,
            reserved: [0; 16],
        };
        m.check = Self::check_word(&m);
        m
    }

    /// The check word of a record: FNV-1a of its bytes with `check` zero.
    fn check_word(m: &MetaFixed) -> u64 {
        fnv1a(bytemuck::bytes_of(&MetaFixed { check: 0, ..*m }))
    }

    /// Validate an opener's copy of the record and derive the geometry from it.
    pub(crate) fn from_meta(m: &MetaFixed) -> Result<Geometry, String> {
        if m.magic != DICT_MAGIC {
            return Err(format!("dict magic {:#x}", m.magic));
        }
        if m.check != Self::check_word(m) {
            return Err("its record fails its check word: a process overwrote it".into());
        }
        if m.reserved != [0; 16] {
            return Err("its record's reserved bytes are not zero".into());
        }
        let key_fixed = match m.key_kind {
            KEY_FIXED => true,
            KEY_VARIABLE => false,
            k => return Err(format!("key kind {k}")),
        };
        let g = Geometry::new(Shape {
            key_fixed,
            key_cap: m.key_cap,
            stripes: m.stripes,
            nodes: m.nodes,
            buckets: m.buckets,
            capacity: m.capacity,
            value_size: m.value_size as usize,
            value_align: m.value_align as usize,
        })?;
        if g.stripe_stride != m.stripe_stride as usize || g.node_stride != m.node_stride as usize {
            return Err("stripe or node size differs from this build's (another architecture or libc?)".into());
        }
        Ok(g)
    }

    /// The key type name recorded in `m`.
    pub(crate) fn key_name(m: &MetaFixed) -> String {
        let end = m.key_name.iter().position(|&b| b == 0).unwrap_or(KEY_NAME_LEN);
        String::from_utf8_lossy(&m.key_name[..end]).into_owned()
    }

    /// Stripe of a hash: the top 32 bits scaled to `stripes`.
    #[inline]
    pub(crate) fn stripe_of(&self, h: u64) -> usize {
        (((h >> 32) * u64::from(self.stripes)) >> 32) as usize
    }

    /// Bucket of a hash within its stripe: the low bits.
    #[inline]
    pub(crate) fn bucket_of(&self, h: u64) -> u32 {
        (h as u32) & (self.buckets - 1)
    }

    /// The tag stored in a node.
    #[inline]
    pub(crate) fn tag_of(h: u64) -> u32 {
        (h as u32) ^ ((h >> 32) as u32)
    }

    /// Total nodes (the payload's element count).
    pub(crate) fn total_nodes(&self) -> u64 {
        u64::from(self.stripes) * u64::from(self.nodes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_sizes() {
        let g = Geometry::plan(1, None, true, 8, 8, 8).unwrap();
        assert_eq!((g.stripes, g.nodes, g.buckets), (1, 1, 1));
        let g = Geometry::plan(10, None, false, 32, 8, 8).unwrap();
        assert_eq!((g.stripes, g.nodes), (1, 10));
        let g = Geometry::plan(1 << 20, None, false, 32, 8, 8).unwrap();
        assert_eq!(g.stripes, 64);
        assert!(g.total_nodes() < (1 << 20) * 21 / 20, "{g:?}");
        assert_eq!(g.off_nodes % 64, 0);
        assert_eq!(g.stripe_stride % 64, 0);
        let m = g.meta("str");
        assert_eq!(Geometry::from_meta(&m).unwrap(), g);
        assert_eq!(Geometry::key_name(&m), "str");
        assert!(Geometry::plan(0, None, true, 8, 8, 8).is_err());
        assert!(Geometry::plan(10, Some(0), true, 8, 8, 8).is_err());
        assert!(Geometry::plan(10, None, false, MAX_KEY_LEN as u32 + 1, 8, 8).is_err());
    }

    #[test]
    fn hostile_meta_is_refused() {
        let g = Geometry::plan(1000, None, false, 16, 8, 8).unwrap();
        let good = g.meta("str");
        let mut bad = good;
        bad.stripes = 0;
        assert!(Geometry::from_meta(&bad).is_err());
        let mut bad = good;
        bad.nodes = u32::MAX;
        assert!(Geometry::from_meta(&bad).is_err());
        let mut bad = good;
        bad.buckets = 3;
        assert!(Geometry::from_meta(&bad).is_err());
        let mut bad = good;
        bad.node_stride += 16;
        assert!(Geometry::from_meta(&bad).is_err());
        let mut bad = good;
        bad.capacity = u64::MAX;
        assert!(Geometry::from_meta(&bad).is_err());
    }
}
