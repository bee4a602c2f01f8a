//! `SharedDict<K, V>`: a fixed-capacity hash map in shared memory with atomic updates.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use super::error::ManagerError;
use super::key::{DictKey, key_hash};
use super::layout::{Geometry, MAX_CAPACITY, MAX_KEY_LEN, MAX_VALUE_SIZE, MetaFixed, STRIPES_OFF, StripeHead};
use super::options::DictOptions;
use super::stripe::{StripeGuard, Table};
use crate::segment::header::HEADER_SIZE;
use crate::segment::kind::{self, Create, SegmentKind, segment_handle};
use crate::segment::{Expect, Kind, Layout, Segment, SegmentError, Target};
use crate::shared::{Element, type_info};
use crate::sync::RawMutex;
use crate::sys::Deadline;

/// Ties a dict to its key and value types while staying `Send + Sync` for any of them.
type Marker<K, V> = PhantomData<(fn(&K), fn() -> V)>;

/// A hash map in shared memory, like `multiprocessing.Manager().dict()` without the manager
/// process: every process maps the table and works on it directly.
///
/// Keys are short strings or byte strings (at most [`max_key_len`](Self::max_key_len) bytes) or
/// fixed-size Pod values ([`DictKey`]); values are any [`Element`]. The capacity is fixed at
/// creation; an insert beyond it fails with [`ManagerError::Full`]. Every operation locks one
/// of the dict's stripes, so processes working on different keys rarely wait for each other,
/// and [`update`](Self::update) is an atomic read-modify-write, the fix for Python's
/// `d[k] += 1` race. A process killed inside an operation leaves the dict as if the operation
/// had not started (or had completed); the next user repairs it (see [the protocol](super)).
///
/// Values are copied in and out; no reference into the shared table is ever handed out.
///
/// ```
/// use shmkit::manager::SharedDict;
/// let d = SharedDict::<str, u64>::create(None, 1000)?;
/// d.insert("apples", 3)?;
/// let peer = SharedDict::<str, u64>::open(d.name().unwrap())?; // any process, by name
/// peer.update("apples", 0, |n| n + 2)?;                     // atomic read-modify-write
/// peer.update("pears", 0, |n| n + 1)?;                      // absent: starts from the default
/// assert_eq!(d.get("apples")?, Some(5));
/// assert_eq!(d.remove("pears")?, Some(1));
/// assert_eq!(d.snapshot()?, vec![("apples".to_string(), 5)]);
/// # Ok::<(), shmkit::manager::ManagerError>(())
/// ```
pub struct SharedDict<K: DictKey + ?Sized, V: Element> {
    seg: Segment,
    geom: Geometry,
    timeout: Option<Duration>,
    _kv: Marker<K, V>,
}

impl<K: DictKey + ?Sized, V: Element> std::fmt::Debug for SharedDict<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedDict")
            .field("name", &self.seg.name())
            .field("key", &K::key_type_name())
            .field("value", &V::TYPE_NAME)
            .field("capacity", &self.geom.capacity)
            .field("stripes", &self.geom.stripes)
            .finish()
    }
}

/// One place in the dict's count, taken before an insert (under the stripe lock, so the count
/// is never below the entries present; see the module docs) and given back on drop unless
/// the insert happened.
struct Reservation<'t> {
    total: &'t std::sync::atomic::AtomicU64,
}

impl<'t> Reservation<'t> {
    /// Count one more entry, unless the dict holds `capacity`.
    fn take(table: &Table<'t>, capacity: u64) -> Option<Self> {
        let total = &table.live().total;
        if total.fetch_add(1, Ordering::Relaxed) >= capacity {
            total.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Reservation { total })
    }

    /// The entry was inserted: keep the place.
    fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Recovery counters of a dict or list (for tests and monitoring).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Locks acquired from a dead holder.
    pub owner_died: u64,
    /// Half-done operations rolled back.
    pub rollbacks: u64,
}

impl DictOptions {
    /// Create a named dict for `capacity` entries (`None`: a random `/shmkit-…` name).
    pub fn create<K: DictKey + ?Sized, V: Element>(
        &self,
        name: Option<&str>,
        capacity: usize,
    ) -> Result<SharedDict<K, V>, ManagerError> {
        let geom = SharedDict::<K, V>::plan(self, capacity)?;
        Ok(kind::create::<SharedDict<K, V>, _>(&self.segment, Target::Named(name), geom)?.with_timeout(self))
    }

    /// Create an anonymous dict (a sealed memfd), shared with forked children.
    pub fn anonymous<K: DictKey + ?Sized, V: Element>(
        &self,
        capacity: usize,
    ) -> Result<SharedDict<K, V>, ManagerError> {
        let geom = SharedDict::<K, V>::plan(self, capacity)?;
        Ok(kind::create::<SharedDict<K, V>, _>(&self.segment, Target::Anonymous, geom)?.with_timeout(self))
    }

    /// Open a named dict; its key and value types must be `K` and `V`.
    ///
    /// ```
    /// use shmkit::manager::{DictOptions, ManagerError, SharedDict};
    /// let d = SharedDict::<str, u64>::create(None, 10)?;
    /// let name = d.name().unwrap();
    /// let opts = DictOptions::new();
    /// assert!(matches!(opts.open::<u64, u64>(name), Err(ManagerError::KeyTypeMismatch { .. })));
    /// assert!(matches!(opts.open::<str, f64>(name), Err(ManagerError::Segment(_))));
    /// # Ok::<(), ManagerError>(())
    /// ```
    pub fn open<K: DictKey + ?Sized, V: Element>(&self, name: &str) -> Result<SharedDict<K, V>, ManagerError> {
        Ok(kind::open::<SharedDict<K, V>>(&self.segment, name)?.with_timeout(self))
    }

    /// Open the named dict, or create it for `capacity` entries when the name is free (see
    /// [`SegmentOptions::open_or_create`](crate::SegmentOptions::open_or_create)).
    pub fn open_or_create<K: DictKey + ?Sized, V: Element>(
        &self,
        name: &str,
        capacity: usize,
    ) -> Result<SharedDict<K, V>, ManagerError> {
        let geom = SharedDict::<K, V>::plan(self, capacity)?;
        Ok(kind::open_or_create::<SharedDict<K, V>, _>(&self.segment, name, geom)?.with_timeout(self))
    }
}

impl<K: DictKey + ?Sized, V: Element> SegmentKind for SharedDict<K, V> {
    type Error = ManagerError;

    fn expect() -> Expect {
        Expect { kind: Some(Kind::Dict), elem: Some(type_info::<V>()), min_control_len: STRIPES_OFF }
    }

    fn attach(seg: Segment) -> Result<Self, ManagerError> {
        let label = seg.name().unwrap_or("").to_owned();
        let h = seg.header().ok_or_else(|| SegmentError::NotShmkit { name: label.clone() })?;
        let avail = h.payload_offset as usize - HEADER_SIZE;
        // SAFETY: the control block holds at least STRIPES_OFF >= 128 bytes (checked by
        // `open_typed` against `expect`), 8-aligned; MetaFixed is Pod. A copy, validated
        // below, never trusted in place.
        let meta: MetaFixed = unsafe { std::ptr::read_volatile(seg.control_ptr().cast::<MetaFixed>()) };
        let geom = Geometry::from_meta(&meta).map_err(ManagerError::corrupt_dict)?;
        if geom.control_len > avail || geom.total_nodes() != h.elem_count {
            return Err(ManagerError::corrupt_dict(format!(
                "its shape needs {} control bytes and {} values, the segment has {avail} and {}",
                geom.control_len,
                geom.total_nodes(),
                h.elem_count
            )));
        }
        // The record must describe this very value type: every value access uses its size.
        if geom.value_size != std::mem::size_of::<V>() || geom.value_align != std::mem::align_of::<V>() {
            return Err(ManagerError::corrupt_dict(format!(
                "its record says values of {} bytes aligned to {}, the segment holds {} ({} bytes, aligned to {})",
                geom.value_size,
                geom.value_align,
                V::TYPE_NAME,
                std::mem::size_of::<V>(),
                std::mem::align_of::<V>()
            )));
        }
        let found = Geometry::key_name(&meta);
        let fits = match K::FIXED_LEN {
            Some(n) => geom.key_fixed && geom.key_cap as usize == n,
            None => !geom.key_fixed,
        };
        // Byte for byte, as this build writes it: nothing may hide after the terminator.
        if !fits || meta.key_name != geom.meta(&K::key_type_name()).key_name {
            return Err(ManagerError::KeyTypeMismatch { name: label, expected: K::key_type_name().into(), found });
        }
        Ok(SharedDict { seg, geom, timeout: None, _kv: PhantomData })
    }
}

impl<K: DictKey + ?Sized, V: Element> Create<Geometry> for SharedDict<K, V> {
    fn layout(geom: &Geometry) -> Result<Layout, ManagerError> {
        Ok(Layout {
            kind: Kind::Dict,
            elem: type_info::<V>(),
            elem_count: geom.total_nodes(),
            control_len: geom.control_len,
            payload_align: 64,
        })
    }

    unsafe fn init(seg: &Segment, geom: Geometry) -> Result<(), SegmentError> {
        let meta = geom.meta(&K::key_type_name());
        let ctl = seg.control_ptr();
        // SAFETY: the control block holds `control_len` bytes, 64-aligned, of a segment that
        // nobody else can see yet (the caller's contract); it is zero-filled, which is the
        // empty dict except for the record written here and the stripe mutexes initialised
        // below.
        unsafe {
            std::ptr::write(ctl.cast::<MetaFixed>(), meta);
            for s in 0..geom.stripes as usize {
                let head = ctl.add(STRIPES_OFF + s * geom.stripe_stride).cast::<StripeHead>();
                RawMutex::init(std::ptr::addr_of_mut!((*head).lock)).map_err(|e| {
                    SegmentError::io("pthread_mutex_init", seg.name().unwrap_or(""), std::io::Error::other(e))
                })?;
            }
        }
        Ok(())
    }
}

segment_handle! {
    impl[K: DictKey + ?Sized, V: Element] SharedDict<K, V>, "dict", ManagerError, seg,
    (capacity: usize) => Self::plan(&DictOptions::new(), capacity)?
}

impl<K: DictKey + ?Sized, V: Element> SharedDict<K, V> {
    /// The geometry of a new dict for `capacity` entries under `opts`, sizes bounded first.
    fn plan(opts: &DictOptions, capacity: usize) -> Result<Geometry, ManagerError> {
        let key_cap = K::FIXED_LEN.unwrap_or(opts.max_key_len);
        // Sizes from the caller are bounded before anything is computed from them.
        for (what, requested, max) in [
            ("dict capacity", capacity, MAX_CAPACITY as usize),
            ("max_key_len", key_cap, MAX_KEY_LEN),
            ("dict value size", std::mem::size_of::<V>(), MAX_VALUE_SIZE),
        ] {
            if requested > max {
                return Err(ManagerError::TooLarge { what, requested: requested as u64, max: max as u64 });
            }
        }
        let key_cap = u32::try_from(key_cap)
            .map_err(|_| ManagerError::Invalid { what: "max_key_len", reason: format!("{key_cap} bytes") })?;
        Geometry::plan(
            capacity as u64,
            opts.stripes,
            K::FIXED_LEN.is_some(),
            key_cap,
            std::mem::size_of::<V>(),
            std::mem::align_of::<V>(),
        )
        .map_err(|reason| ManagerError::Invalid { what: "dict shape", reason })
    }

    fn with_timeout(mut self, opts: &DictOptions) -> Self {
        self.timeout = opts.timeout;
        self
    }

    fn table(&self) -> Table<'_> {
        // SAFETY: the geometry was validated against this segment's control block and payload
        // (`build` / `open_with`); the mapping lives as long as `self`.
        unsafe { Table::new(self.seg.control_ptr(), self.seg.as_ptr(), &self.geom) }
    }

    fn deadline(&self) -> Deadline {
        Deadline::from_timeout(self.timeout)
    }

    /// The key's bytes, hash and stripe, or `KeyTooLong`.
    fn place<'k>(&self, key: &'k K) -> Result<(&'k [u8], u64, usize), ManagerError> {
        let bytes = key.key_bytes();
        if bytes.len() > self.geom.key_cap as usize {
            return Err(ManagerError::KeyTooLong { len: bytes.len(), max: self.geom.key_cap as usize });
        }
        let h = key_hash(bytes);
        Ok((bytes, h, self.geom.stripe_of(h)))
    }

    /// Copy out the value for `key`.
    pub fn get(&self, key: &K) -> Result<Option<V>, ManagerError> {
        let (bytes, h, s) = self.place(key)?;
        let guard = self.table().lock(s, self.deadline())?;
        match guard.find(bytes, h)? {
            Some(f) => Ok(Some(guard.read(f.node)?)),
            None => Ok(None),
        }
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &K) -> Result<bool, ManagerError> {
        let (bytes, h, s) = self.place(key)?;
        let guard = self.table().lock(s, self.deadline())?;
        Ok(guard.find(bytes, h)?.is_some())
    }

    /// Set `key` to `value`; returns the value it replaced.
    ///
    /// ```
    /// let d = shmkit::manager::SharedDict::<str, i32>::anonymous(4)?;
    /// assert_eq!(d.insert("k", 1)?, None);
    /// assert_eq!(d.insert("k", 2)?, Some(1));
    /// # Ok::<(), shmkit::manager::ManagerError>(())
    /// ```
    pub fn insert(&self, key: &K, value: V) -> Result<Option<V>, ManagerError> {
        let mut old = None;
        self.upsert(key, |cur| {
            old = cur;
            value
        })?;
        Ok(old)
    }

    /// Atomically replace the value of `key` with `f(value)`, starting from `default` when the
    /// key is absent, and return the new value: Python's `d[k] = f(d.get(k, default))` without
    /// the race. `f` runs while the key's stripe is locked: keep it short, and do not use this
    /// dict inside it. If `f` panics, the dict is unchanged.
    ///
    /// ```
    /// let d = shmkit::manager::SharedDict::<str, u64>::anonymous(4)?;
    /// for _ in 0..3 {
    ///     d.update("count", 0, |n| n + 1)?;
    /// }
    /// assert_eq!(d.get("count")?, Some(3));
    /// # Ok::<(), shmkit::manager::ManagerError>(())
    /// ```
    pub fn update(&self, key: &K, default: V, f: impl FnOnce(V) -> V) -> Result<V, ManagerError> {
        self.upsert(key, |cur| f(cur.unwrap_or(default)))
    }

    /// Lock the key's stripe and store `f(current)`; inserts when absent.
    fn upsert(&self, key: &K, f: impl FnOnce(Option<V>) -> V) -> Result<V, ManagerError> {
        let (bytes, h, s) = self.place(key)?;
        let table = self.table();
        let mut f = Some(f);
        let mut recounted = false;
        // One deadline for the whole operation, recount included.
        let deadline = self.deadline();
        loop {
            let guard = table.lock(s, deadline)?;
            if let Some(found) = guard.find(bytes, h)? {
                let cur = guard.read(found.node)?;
                let new = f.take().map(|f| f(Some(cur))).ok_or_else(|| ManagerError::corrupt_dict("retried"))?;
                guard.write(found.node, new)?;
                return Ok(new);
            }
            let Some(reservation) = Reservation::take(&table, self.geom.capacity) else {
                if !recounted && table.live().needs_recount.load(Ordering::Acquire) != 0 {
                    // The count may still hold reservations of a dead process: fix it and retry.
                    drop(guard);
                    self.recount(deadline)?;
                    recounted = true;
                    continue;
                }
                return Err(ManagerError::Full { what: "dict", capacity: self.geom.capacity });
            };
            if !guard.has_free_node() {
                return Err(ManagerError::StripeFull {
                    stripe: s,
                    nodes: self.geom.nodes,
                    len: table.live().total.load(Ordering::Relaxed),
                    capacity: self.geom.capacity,
                });
            }
            // If `f` panics, the reservation is returned as the stack unwinds.
            let new = f.take().map(|f| f(None)).ok_or_else(|| ManagerError::corrupt_dict("retried"))?;
            guard.insert_new(bytes, h, new)?;
            reservation.keep();
            return Ok(new);
        }
    }

    /// Remove `key`; returns its value.
    ///
    /// ```
    /// let d = shmkit::manager::SharedDict::<str, u8>::anonymous(4)?;
    /// d.insert("k", 1)?;
    /// assert_eq!(d.remove("k")?, Some(1));
    /// assert_eq!(d.remove("k")?, None);
    /// assert!(!d.contains_key("k")? && d.is_empty()?);
    /// # Ok::<(), shmkit::manager::ManagerError>(())
    /// ```
    pub fn remove(&self, key: &K) -> Result<Option<V>, ManagerError> {
        let (bytes, h, s) = self.place(key)?;
        let table = self.table();
        let guard = table.lock(s, self.deadline())?;
        let Some(found) = guard.find(bytes, h)? else {
            return Ok(None);
        };
        let old = guard.read(found.node)?;
        guard.remove(found)?;
        // After the entry is gone, still under the stripe lock (count >= entries).
        table.live().total.fetch_sub(1, Ordering::Relaxed);
        Ok(Some(old))
    }

    /// Remove every entry (Python's `d.clear()`). Every stripe is locked while clearing, so
    /// no other process sees a half-cleared dict; each entry's removal is journaled like
    /// [`remove`](Self::remove), so a process killed mid-clear leaves a consistent dict
    /// holding the entries it had not reached yet.
    ///
    /// ```
    /// let d = shmkit::manager::SharedDict::<str, u32>::anonymous(8)?;
    /// d.insert("a", 1)?;
    /// d.insert("b", 2)?;
    /// d.clear()?;
    /// assert!(d.is_empty()? && d.get("a")?.is_none());
    /// d.insert("c", 3)?; // the freed room is usable again
    /// # Ok::<(), shmkit::manager::ManagerError>(())
    /// ```
    pub fn clear(&self) -> Result<(), ManagerError> {
        let guards = self.lock_all(self.deadline())?;
        for g in &guards {
            g.clear()?;
        }
        self.store_count(0);
        Ok(())
    }

    /// Number of entries. Exact when no other process is changing the dict; an insert in
    /// flight may already be counted.
    pub fn len(&self) -> Result<usize, ManagerError> {
        let live = self.table().live();
        if live.needs_recount.load(Ordering::Acquire) != 0 {
            return self.recount(self.deadline()).map(|n| n as usize);
        }
        Ok(live.total.load(Ordering::Relaxed).min(self.geom.capacity) as usize)
    }

    /// Whether the dict is empty (see [`len`](Self::len)).
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// Lock every stripe, in index order (the only order in which more than one is held),
    /// giving up at the operation's `deadline`.
    fn lock_all(&self, deadline: Deadline) -> Result<Vec<StripeGuard<'_>>, ManagerError> {
        let table = self.table();
        (0..self.geom.stripes as usize).map(|s| table.lock(s, deadline)).collect()
    }

    /// Recount the entries under every stripe lock (by `deadline`) and store the count.
    fn recount(&self, deadline: Deadline) -> Result<u64, ManagerError> {
        let guards = self.lock_all(deadline)?;
        let mut sum = 0u64;
        for g in &guards {
            sum += u64::from(g.len()?);
        }
        self.store_count(sum);
        Ok(sum)
    }

    fn store_count(&self, sum: u64) {
        let live = self.table().live();
        live.total.store(sum, Ordering::Relaxed);
        live.needs_recount.store(0, Ordering::Release);
    }

    /// Every entry, copied out at one instant: all stripes are locked while copying, so no
    /// update is half-seen. In no particular order.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// let d = shmkit::manager::SharedDict::<u16, u8>::anonymous(100)?;
    /// for k in 0..10u16 {
    ///     d.insert(&k, k as u8 * 2)?;
    /// }
    /// let m: HashMap<u16, u8> = d.snapshot()?.into_iter().collect();
    /// assert_eq!((m.len(), m[&7]), (10, 14));
    /// # Ok::<(), shmkit::manager::ManagerError>(())
    /// ```
    pub fn snapshot(&self) -> Result<Vec<(K::Owned, V)>, ManagerError> {
        let guards = self.lock_all(self.deadline())?;
        let mut out = Vec::new();
        let mut sum = 0u64;
        let mut bad_key = false;
        for g in &guards {
            sum += u64::from(g.len()?);
            g.for_each::<V>(|k, v| match K::from_key_bytes(k) {
                Some(k) => out.push((k, v)),
                None => bad_key = true,
            })?;
        }
        if bad_key {
            return Err(ManagerError::corrupt_dict(format!("a stored key is not a valid {}", K::key_type_name())));
        }
        if out.len() as u64 != sum {
            return Err(ManagerError::corrupt_dict(format!("the stripes count {sum} entries but hold {}", out.len())));
        }
        self.store_count(sum);
        Ok(out)
    }

    /// The capacity chosen at creation.
    pub fn capacity(&self) -> usize {
        self.geom.capacity as usize
    }

    /// The longest key, in bytes (the key size for fixed-size keys).
    pub fn max_key_len(&self) -> usize {
        self.geom.key_cap as usize
    }

    /// Number of lock stripes.
    pub fn stripes(&self) -> usize {
        self.geom.stripes as usize
    }

    /// The lock timeout of this handle (`None`: wait as long as it takes).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Set this handle's lock timeout; operations then fail with
    /// [`LockError::Timeout`](crate::LockError::Timeout) instead of waiting longer.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Recovery counters, and a scribble hook for fault-injection tests (through
    /// `crate::testing`).
    pub(crate) fn stats(&self) -> RecoveryStats {
        let live = self.table().live();
        RecoveryStats {
            owner_died: live.owner_died.load(Ordering::Relaxed),
            rollbacks: live.rollbacks.load(Ordering::Relaxed),
        }
    }

    /// Whether a journal records an operation in flight (for tests that stop a process there).
    pub(crate) fn journal_in_flight(&self) -> bool {
        self.table().in_flight()
    }

    /// Whether the stripe of `key` has a free node (to tell `StripeFull` from a bug).
    pub(crate) fn stripe_has_room(&self, key: &K) -> Result<bool, ManagerError> {
        let (_, _, s) = self.place(key)?;
        Ok(self.table().lock(s, self.deadline())?.has_free_node())
    }

    /// Overwrite byte `offset % control_len` of the control block with `byte`, unless it lies
    /// in a mutex; returns whether it wrote. For fuzzing hostile bytes.
    ///
    /// # Safety
    ///
    /// No other thread or process may use the dict while this runs.
    pub(crate) unsafe fn scribble(&self, offset: usize, byte: u8) -> bool {
        let at = offset % self.geom.control_len;
        if at >= STRIPES_OFF && at < self.geom.off_buckets {
            let within = (at - STRIPES_OFF) % self.geom.stripe_stride;
            if within < std::mem::size_of::<RawMutex>() {
                return false;
            }
        }
        // SAFETY: `at` is inside the control block; a byte store is always aligned; per the
        // contract nobody else accesses the dict now.
        unsafe { AtomicU8::from_ptr(self.seg.control_ptr().add(at)).store(byte, Ordering::Relaxed) };
        true
    }
}
