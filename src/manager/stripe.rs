//! One stripe of a dict: its lock, its chains, its undo journal and the recovery that uses it.
//!
//! Every method of [`StripeGuard`] runs with the stripe's lock held. Indices read from shared
//! memory are checked before use and chains are walked at most `nodes` steps, so hostile
//! bytes give [`ManagerError::Corrupt`], never an out-of-bounds access or a hang.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering, compiler_fence};

use super::error::ManagerError;
use super::layout::{
    Geometry, IDLE, INSERT, Journal, META_LIVE_OFF, MetaLive, NodeHead, REMOVE, STRIPES_OFF, StripeHead, VALUE,
};
use crate::shared::Element;
use crate::sync::Acquired;
use crate::sys::Deadline;

/// A view of a dict's shared structures. Copy it freely; it lives as long as the mapping.
#[derive(Clone, Copy)]
pub(crate) struct Table<'a> {
    ctl: *mut u8,
    values: *mut u8,
    g: &'a Geometry,
}

/// Where a key was found: its node, the node linking to it (0: the bucket head), its bucket.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Found {
    pub node: u32,
    prev: u32,
    bucket: u32,
}

/// Whether `V` is written with one atomic store (so that a value update needs no journal).
pub(crate) fn is_word<V>() -> bool {
    let size = std::mem::size_of::<V>();
    matches!(size, 1 | 2 | 4 | 8) && std::mem::align_of::<V>() >= size
}

/// Store a word-sized value with one atomic store.
///
/// # Safety
///
/// `p` must be valid for writes of `V` and aligned for it, and `is_word::<V>()` must hold.
pub(crate) unsafe fn store_word<V: Element>(p: *mut u8, v: V) {
    let b = bytemuck::bytes_of(&v);
    // SAFETY: per the contract `p` is valid and aligned to `size_of::<V>()`, which is the
    // width of the atomic used; the bytes come from `v` itself.
    unsafe {
        match *b {
            [x] => AtomicU8::from_ptr(p).store(x, Ordering::Relaxed),
            [x, y] => AtomicU16::from_ptr(p.cast()).store(u16::from_ne_bytes([x, y]), Ordering::Relaxed),
            [a, b, c, d] => AtomicU32::from_ptr(p.cast()).store(u32::from_ne_bytes([a, b, c, d]), Ordering::Relaxed),
            _ => {
                let mut w = [0u8; 8];
                w.copy_from_slice(&b[..8]);
                AtomicU64::from_ptr(p.cast()).store(u64::from_ne_bytes(w), Ordering::Relaxed)
            }
        }
    }
}

impl<'a> Table<'a> {
    /// # Safety
    ///
    /// `ctl` must point to a published dict control block of at least `g.control_len` bytes
    /// and `values` to its payload of `g.total_nodes()` aligned values of `g.value_size`
    /// bytes, both mapped for `'a`.
    pub(crate) unsafe fn new(ctl: *mut u8, values: *mut u8, g: &'a Geometry) -> Self {
        Table { ctl, values, g }
    }

    pub(crate) fn live(&self) -> &'a MetaLive {
        // SAFETY: the control block holds at least STRIPES_OFF bytes (Geometry::new), so the
        // MetaLive at META_LIVE_OFF (64-aligned) is in bounds; all its fields are atomics.
        unsafe { &*self.ctl.add(META_LIVE_OFF).cast::<MetaLive>() }
    }

    fn stripe_base(&self, s: usize) -> *mut u8 {
        debug_assert!(s < self.g.stripes as usize);
        // Stripe numbers come from `Geometry::stripe_of` or loops below `stripes`, never from
        // shared memory; the clamp keeps even a bug in bounds.
        let s = s.min(self.g.stripes as usize - 1);
        self.ctl.wrapping_add(STRIPES_OFF + s * self.g.stripe_stride)
    }

    fn head(&self, s: usize) -> &'a StripeHead {
        // SAFETY: stripe `s` (< stripes) lies inside the control block; its head is at the
        // start of a 64-aligned stride; the mutex was initialised by the creator before
        // publication and every other field is an atomic.
        unsafe { &*self.stripe_base(s).cast::<StripeHead>() }
    }

    fn journal(&self, s: usize) -> &'a Journal {
        // SAFETY: as in `head`: `journal_off` (8-aligned) is inside the stride; atomics only.
        unsafe { &*self.stripe_base(s).add(self.g.journal_off).cast::<Journal>() }
    }

    fn jvalue(&self, s: usize) -> *mut u8 {
        self.stripe_base(s).wrapping_add(self.g.jvalue_off)
    }

    fn bucket(&self, s: usize, b: u32) -> &'a AtomicU32 {
        let b = b.min(self.g.buckets - 1) as usize;
        let at = self.g.off_buckets + (s * self.g.buckets as usize + b) * 4;
        // SAFETY: `s < stripes` and `b < buckets`, so the word lies in the bucket area, which
        // starts 64-aligned; it is only ever accessed atomically.
        unsafe { &*self.ctl.add(at).cast::<AtomicU32>() }
    }

    /// Offset of node `i` (validated: 1..=nodes).
    fn node_off(&self, s: usize, i: u32) -> Result<usize, ManagerError> {
        if i == 0 || i > self.g.nodes {
            return Err(ManagerError::corrupt_dict(format!(
                "stripe {s} links to node {i} of {} (1-based)",
                self.g.nodes
            )));
        }
        Ok(self.g.off_nodes + (s * self.g.nodes as usize + (i as usize - 1)) * self.g.node_stride)
    }

    fn node(&self, s: usize, i: u32) -> Result<&'a NodeHead, ManagerError> {
        let at = self.node_off(s, i)?;
        // SAFETY: a validated node index gives an in-bounds, 16-aligned node head; atomics only.
        Ok(unsafe { &*self.ctl.add(at).cast::<NodeHead>() })
    }

    fn key_ptr(&self, s: usize, i: u32) -> Result<*mut u8, ManagerError> {
        Ok(self.ctl.wrapping_add(self.node_off(s, i)? + std::mem::size_of::<NodeHead>()))
    }

    fn value_ptr(&self, s: usize, i: u32) -> Result<*mut u8, ManagerError> {
        self.node_off(s, i)?;
        let index = s * self.g.nodes as usize + (i as usize - 1);
        Ok(self.values.wrapping_add(index * self.g.value_size))
    }

    /// Whether some stripe's journal records an operation in flight (read without locks;
    /// meaningful only while the processes using the dict are stopped).
    pub(crate) fn in_flight(&self) -> bool {
        (0..self.g.stripes as usize).any(|s| self.head(s).state.load(Ordering::Relaxed) != IDLE)
    }

    /// Lock stripe `s`, repairing it first if its previous holder died in mid-operation.
    pub(crate) fn lock(&self, s: usize, deadline: Deadline) -> Result<StripeGuard<'a>, ManagerError> {
        let head = self.head(s);
        let how = head.lock.lock_until(deadline)?;
        let guard = StripeGuard { t: *self, s, _not_send: PhantomData };
        let died = how == Acquired::OwnerDied;
        if died {
            // The dead holder may have left `total` one too high (see the module docs). Set
            // before marking consistent, so a recoverer that dies too leaves it set.
            self.live().owner_died.fetch_add(1, Ordering::Relaxed);
            self.live().needs_recount.store(1, Ordering::Release);
        }
        let repaired = if died || head.state.load(Ordering::Acquire) != IDLE { guard.roll_back() } else { Ok(()) };
        if died {
            // Consistent even when the journal is corrupt: that error then repeats for every
            // locker instead of the lock becoming unusable.
            // SAFETY: we hold the lock (`guard`).
            unsafe { head.lock.mark_consistent() }?;
        }
        repaired?;
        Ok(guard)
    }
}

/// Stripe `s` locked by this thread; unlocked on drop. `!Send`: the lock must be released by
/// the thread that took it.
pub(crate) struct StripeGuard<'a> {
    t: Table<'a>,
    s: usize,
    _not_send: PhantomData<*const ()>,
}

impl Drop for StripeGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: a guard exists only after `lock` acquired the lock on this thread.
        unsafe { self.t.head(self.s).lock.unlock() }
    }
}

fn check_index(what: &str, v: u32, max: u32) -> Result<u32, ManagerError> {
    if v > max {
        return Err(ManagerError::corrupt_dict(format!("{what} is {v}, more than {max}")));
    }
    Ok(v)
}

impl<'a> StripeGuard<'a> {
    fn head(&self) -> &'a StripeHead {
        self.t.head(self.s)
    }

    /// Undo a half-done operation recorded in the journal, then mark the journal idle.
    /// Idempotent: a recoverer that dies half-way leaves the journal for the next one.
    fn roll_back(&self) -> Result<(), ManagerError> {
        let (g, head, j) = (self.t.g, self.head(), self.t.journal(self.s));
        match head.state.load(Ordering::Acquire) {
            IDLE => return Ok(()),
            INSERT | REMOVE => {
                let n = g.nodes;
                let node = j.node.load(Ordering::Relaxed);
                let bucket = j.bucket.load(Ordering::Relaxed);
                if bucket >= g.buckets {
                    return Err(ManagerError::corrupt_dict(format!("journal bucket {bucket} of {}", g.buckets)));
                }
                let prev = check_index("journal prev", j.prev.load(Ordering::Relaxed), n)?;
                let old_link = check_index("journal link", j.old_link.load(Ordering::Relaxed), n)?;
                let old_next = check_index("journal next", j.old_next.load(Ordering::Relaxed), n)?;
                let old_free = check_index("journal free head", j.old_free.load(Ordering::Relaxed), n)?;
                let old_fresh = check_index("journal fresh count", j.old_fresh.load(Ordering::Relaxed), n)?;
                let old_len = check_index("journal length", j.old_len.load(Ordering::Relaxed), n)?;
                let target = self.t.node(self.s, node)?;
                let link = if prev == 0 { self.t.bucket(self.s, bucket) } else { &self.t.node(self.s, prev)?.next };
                link.store(old_link, Ordering::Relaxed);
                target.next.store(old_next, Ordering::Relaxed);
                head.free_head.store(old_free, Ordering::Relaxed);
                head.fresh.store(old_fresh, Ordering::Relaxed);
                head.len.store(old_len, Ordering::Relaxed);
            }
            VALUE => {
                let dst = self.t.value_ptr(self.s, j.node.load(Ordering::Relaxed))?;
                // SAFETY: `dst` is a validated value slot and the journal's value area holds
                // `value_size` bytes; they do not overlap; we hold the stripe lock.
                unsafe { std::ptr::copy_nonoverlapping(self.t.jvalue(self.s), dst, g.value_size) };
            }
            other => return Err(ManagerError::corrupt_dict(format!("journal state {other}"))),
        }
        compiler_fence(Ordering::SeqCst);
        head.state.store(IDLE, Ordering::Release);
        self.t.live().rollbacks.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Entries in this stripe.
    pub(crate) fn len(&self) -> Result<u32, ManagerError> {
        check_index("stripe length", self.head().len.load(Ordering::Relaxed), self.t.g.nodes)
    }

    /// Whether a new key would find a node.
    pub(crate) fn has_free_node(&self) -> bool {
        let h = self.head();
        h.free_head.load(Ordering::Relaxed) != 0 || h.fresh.load(Ordering::Relaxed) < self.t.g.nodes
    }

    fn key_eq(&self, i: u32, key: &[u8]) -> Result<bool, ManagerError> {
        let p = self.t.key_ptr(self.s, i)?;
        // SAFETY: callers pass keys of at most `key_cap` bytes, which node `i` (validated) has
        // room for; the stripe lock keeps other writers out while we compare.
        Ok(unsafe { std::slice::from_raw_parts(p, key.len()) } == key)
    }

    /// Find `key` (at most `key_cap` bytes) with hash `h`.
    pub(crate) fn find(&self, key: &[u8], h: u64) -> Result<Option<Found>, ManagerError> {
        let g = self.t.g;
        let bucket = g.bucket_of(h);
        let tag = Geometry::tag_of(h);
        let mut prev = 0;
        let mut i = self.t.bucket(self.s, bucket).load(Ordering::Relaxed);
        let mut steps = 0;
        while i != 0 {
            let node = self.t.node(self.s, i)?;
            steps += 1;
            if steps > g.nodes {
                return Err(ManagerError::corrupt_dict(format!("a chain of stripe {} loops", self.s)));
            }
            if node.tag.load(Ordering::Relaxed) == tag
                && node.key_len.load(Ordering::Relaxed) as usize == key.len()
                && self.key_eq(i, key)?
            {
                return Ok(Some(Found { node: i, prev, bucket }));
            }
            prev = i;
            i = node.next.load(Ordering::Relaxed);
        }
        Ok(None)
    }

    /// Remove every entry of the stripe, one journaled [`remove`](Self::remove) at a time,
    /// bucket by bucket. Each removal lowers the stripe's count and `remove` refuses a count
    /// of zero, so even corrupt chains cannot keep this going.
    pub(crate) fn clear(&self) -> Result<(), ManagerError> {
        for bucket in 0..self.t.g.buckets {
            loop {
                let node = self.t.bucket(self.s, bucket).load(Ordering::Relaxed);
                if node == 0 {
                    break;
                }
                self.remove(Found { node, prev: 0, bucket })?;
            }
        }
        Ok(())
    }

    /// Copy out the value of node `i`.
    pub(crate) fn read<V: Element>(&self, i: u32) -> Result<V, ManagerError> {
        let p = self.t.value_ptr(self.s, i)?;
        // SAFETY: a validated value slot of `size_of::<V>()` bytes (the header's element type
        // is V), aligned (aligned payload, index × size); V is Pod, so any bytes are a value.
        // The stripe lock keeps writers out.
        Ok(unsafe { std::ptr::read(p.cast::<V>()) })
    }

    /// Overwrite the value of node `i`: one atomic store for word-sized values, otherwise
    /// journalled, so a crash leaves the old or the new value, never a mix.
    pub(crate) fn write<V: Element>(&self, i: u32, v: V) -> Result<(), ManagerError> {
        let p = self.t.value_ptr(self.s, i)?;
        if is_word::<V>() {
            // SAFETY: validated, aligned slot of V (see `read`); `is_word` holds.
            unsafe { store_word(p, v) };
            return Ok(());
        }
        let (head, j) = (self.head(), self.t.journal(self.s));
        j.node.store(i, Ordering::Relaxed);
        // SAFETY: the journal's value area holds `value_size` bytes and does not overlap the
        // value slot; we hold the stripe lock.
        unsafe { std::ptr::copy_nonoverlapping(p, self.t.jvalue(self.s), self.t.g.value_size) };
        head.state.store(VALUE, Ordering::Release);
        compiler_fence(Ordering::SeqCst);
        // SAFETY: as in `read`, for writing.
        unsafe { std::ptr::write(p.cast::<V>(), v) };
        compiler_fence(Ordering::SeqCst);
        head.state.store(IDLE, Ordering::Release);
        Ok(())
    }

    /// Link a new entry. The caller checked that `key` (at most `key_cap` bytes) is absent,
    /// that a node is free, and reserved the entry in the dict's count.
    pub(crate) fn insert_new<V: Element>(&self, key: &[u8], h: u64, v: V) -> Result<(), ManagerError> {
        let (g, head, j) = (self.t.g, self.head(), self.t.journal(self.s));
        let free = check_index("free list head", head.free_head.load(Ordering::Relaxed), g.nodes)?;
        let fresh = check_index("fresh count", head.fresh.load(Ordering::Relaxed), g.nodes)?;
        let len = self.len()?;
        let (i, from_free) = if free != 0 {
            (free, true)
        } else if fresh < g.nodes {
            (fresh + 1, false)
        } else {
            return Err(ManagerError::corrupt_dict("no free node after the check"));
        };
        let node = self.t.node(self.s, i)?;
        let old_next = node.next.load(Ordering::Relaxed);
        let next_free = if from_free { check_index("free list link", old_next, g.nodes)? } else { 0 };
        // Fill the node while it is still unreachable: no journal needed for these writes.
        node.tag.store(Geometry::tag_of(h), Ordering::Relaxed);
        node.key_len.store(key.len() as u32, Ordering::Relaxed);
        let kp = self.t.key_ptr(self.s, i)?;
        // SAFETY: the node has `key_cap >= key.len()` key bytes; it is free (unreachable) and
        // we hold the stripe lock.
        unsafe { std::ptr::copy_nonoverlapping(key.as_ptr(), kp, key.len()) };
        let vp = self.t.value_ptr(self.s, i)?;
        // SAFETY: a validated, aligned value slot of V, unreachable until linked below.
        unsafe { std::ptr::write(vp.cast::<V>(), v) };
        let bucket = g.bucket_of(h);
        let link = self.t.bucket(self.s, bucket);
        let old_link = link.load(Ordering::Relaxed);
        self.journal(j, i, bucket, 0, old_link, old_next, free, fresh, len, INSERT);
        if from_free {
            head.free_head.store(next_free, Ordering::Relaxed);
        } else {
            head.fresh.store(fresh + 1, Ordering::Relaxed);
        }
        node.next.store(old_link, Ordering::Relaxed);
        link.store(i, Ordering::Relaxed);
        head.len.store(len + 1, Ordering::Relaxed);
        self.commit();
        Ok(())
    }

    /// Unlink the entry at `f` and put its node on the free list.
    pub(crate) fn remove(&self, f: Found) -> Result<(), ManagerError> {
        let (g, head, j) = (self.t.g, self.head(), self.t.journal(self.s));
        let node = self.t.node(self.s, f.node)?;
        let next = check_index("chain link", node.next.load(Ordering::Relaxed), g.nodes)?;
        let free = check_index("free list head", head.free_head.load(Ordering::Relaxed), g.nodes)?;
        let fresh = check_index("fresh count", head.fresh.load(Ordering::Relaxed), g.nodes)?;
        let len = self.len()?;
        if len == 0 {
            return Err(ManagerError::corrupt_dict(format!("stripe {} holds a key but counts 0", self.s)));
        }
        let link = if f.prev == 0 { self.t.bucket(self.s, f.bucket) } else { &self.t.node(self.s, f.prev)?.next };
        self.journal(j, f.node, f.bucket, f.prev, f.node, next, free, fresh, len, REMOVE);
        link.store(next, Ordering::Relaxed);
        node.next.store(free, Ordering::Relaxed);
        head.free_head.store(f.node, Ordering::Relaxed);
        head.len.store(len - 1, Ordering::Relaxed);
        self.commit();
        Ok(())
    }

    /// Write the undo record, then publish it: from here on a crash is rolled back.
    #[allow(clippy::too_many_arguments)]
    fn journal(
        &self,
        j: &Journal,
        node: u32,
        bucket: u32,
        prev: u32,
        old_link: u32,
        old_next: u32,
        old_free: u32,
        old_fresh: u32,
        old_len: u32,
        op: u32,
    ) {
        for (field, v) in [
            (&j.node, node),
            (&j.bucket, bucket),
            (&j.prev, prev),
            (&j.old_link, old_link),
            (&j.old_next, old_next),
            (&j.old_free, old_free),
            (&j.old_fresh, old_fresh),
            (&j.old_len, old_len),
        ] {
            field.store(v, Ordering::Relaxed);
        }
        self.head().state.store(op, Ordering::Release);
        // A SIGKILL stops a process between two instructions: keep the compiler from moving
        // the changes above the journal's publication (and below the commit).
        compiler_fence(Ordering::SeqCst);
    }

    /// The operation is complete: retire the journal.
    fn commit(&self) {
        compiler_fence(Ordering::SeqCst);
        self.head().state.store(IDLE, Ordering::Release);
    }

    /// Call `f(key bytes, value)` for every entry of the stripe.
    pub(crate) fn for_each<V: Element>(&self, mut f: impl FnMut(&[u8], V)) -> Result<(), ManagerError> {
        let g = self.t.g;
        let mut steps = 0;
        let mut key = Vec::with_capacity(g.key_cap as usize);
        for b in 0..g.buckets {
            let mut i = self.t.bucket(self.s, b).load(Ordering::Relaxed);
            while i != 0 {
                let node = self.t.node(self.s, i)?;
                steps += 1;
                if steps > g.nodes {
                    return Err(ManagerError::corrupt_dict(format!("the chains of stripe {} loop", self.s)));
                }
                let len = check_index("key length", node.key_len.load(Ordering::Relaxed), g.key_cap)? as usize;
                let kp = self.t.key_ptr(self.s, i)?;
                key.clear();
                // SAFETY: `len <= key_cap` bytes of a validated node; we hold the stripe lock.
                key.extend_from_slice(unsafe { std::slice::from_raw_parts(kp, len) });
                f(&key, self.read(i)?);
                i = node.next.load(Ordering::Relaxed);
            }
        }
        Ok(())
    }
}
