//! The ring on the heap, for loom models (`--cfg loom` only): loom atomics, a model of a
//! robust mutex, and slot data in loom cells so that any unsynchronised access to a slot is
//! reported as a data race. Threads stand in for processes; a thread "dies" at a chosen
//! [`Point`]: it stops there, and the locks it held become owner-died, as the kernel's
//! robust-list walk makes them.

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{AcqRel, Acquire};

use super::ring::{
    AtomicU64, GetFail, Hook, Line, Lock, Point, PutFail, Ring, RingHeader, RingInfo, SlotLock, SlotMeta, Waiters, free,
};

const FREE: u32 = 0;
const DEAD: u32 = u32::MAX;

loom::thread_local! {
    static ME: std::cell::Cell<u32> = std::cell::Cell::new(0);
}

/// Name the calling model thread (1, 2, …): locks record their holder by this id.
pub fn set_thread_id(id: u32) {
    ME.with(|me| me.set(id));
}

fn me() -> u32 {
    ME.with(|me| me.get())
}

/// A robust mutex model: 0 free, a thread id while held, `DEAD` once its holder died.
pub struct ModelLock(AtomicU32);

impl SlotLock for ModelLock {
    fn try_acquire(&self) -> Lock {
        let id = me();
        if self.0.compare_exchange(FREE, id, AcqRel, Acquire).is_ok()
            || self.0.compare_exchange(DEAD, id, AcqRel, Acquire).is_ok()
        {
            Lock::Acquired
        } else {
            Lock::Busy
        }
    }

    unsafe fn release(&self) {
        self.0.store(FREE, std::sync::atomic::Ordering::Release);
    }
}

struct DieAt(Option<Point>);

impl Hook for DieAt {
    fn reach(&self, point: Point) -> bool {
        self.0 == Some(point)
    }
}

/// A ring of `u64` messages for loom models.
pub struct ModelRing {
    hdr: RingHeader,
    slots: Vec<SlotMeta<ModelLock>>,
    data: Vec<UnsafeCell<u64>>,
}

// SAFETY: the slot cells are only touched inside `try_put`/`try_get` while the ring protocol
// gives this thread the slot exclusively; loom's cells report any access that is not.
unsafe impl Sync for ModelRing {}
// SAFETY: as above; nothing in it is tied to a thread.
unsafe impl Send for ModelRing {}

/// Outcome of a model operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<T> {
    /// Done.
    Ok(T),
    /// Not possible now (full, empty, busy, pending): retry.
    Retry,
    /// Closed.
    Closed,
    /// The thread died at its point (its locks are now owner-died).
    Died,
}

/// A failed put or get, as a model sees it (each names its own ways to be retried).
enum Fail {
    /// Not possible now: retry.
    Retry,
    /// The ring is closed.
    Closed,
    /// The hook stopped the operation.
    Died,
    /// The shared words contradict each other.
    Corrupt(&'static str),
}

fn waiters() -> Line<Waiters> {
    Line(Waiters { seq: super::ring::AtomicU32::new(0), count: super::ring::AtomicU32::new(0) })
}

impl ModelRing {
    /// A ring of `capacity` slots.
    pub fn new(capacity: usize) -> Self {
        let hdr = RingHeader {
            info: Line(RingInfo {
                format: super::ring::AtomicU32::new(0),
                flags: super::ring::AtomicU32::new(0),
                capacity: AtomicU64::new(capacity as u64),
                stride: AtomicU64::new(8),
                max_msg: AtomicU64::new(8),
                data_offset: AtomicU64::new(0),
                abandoned: AtomicU64::new(0),
                check: AtomicU64::new(0),
            }),
            head: Line(AtomicU64::new(0)),
            tail: Line(AtomicU64::new(0)),
            consumers: waiters(),
            producers: waiters(),
        };
        let slots = (0..capacity as u64)
            .map(|i| SlotMeta { stamp: AtomicU64::new(free(i)), lock: ModelLock(AtomicU32::new(FREE)) })
            .collect();
        let data = (0..capacity).map(|_| UnsafeCell::new(0)).collect();
        ModelRing { hdr, slots, data }
    }

    fn ring(&self, die_at: Option<Point>) -> Ring<'_, ModelLock, DieAt> {
        Ring { hdr: &self.hdr, slots: &self.slots, hook: DieAt(die_at) }
    }

    /// The calling thread died: every lock it holds becomes owner-died.
    fn die(&self) {
        for s in &self.slots {
            let _ = s.lock.0.compare_exchange(me(), DEAD, AcqRel, Acquire);
        }
    }

    /// Try to put `v`; with `die_at`, die at that point if the operation reaches it.
    pub fn try_put(&self, v: u64, die_at: Option<Point>) -> Outcome<()> {
        // SAFETY: the ring hands out slot `i` exclusively until it is published; loom
        // reports a data race if that is ever not so.
        let r = self.ring(die_at).try_put(|i| self.data[i].with_mut(|p| unsafe { *p = v }));
        self.settle(r.map_err(|f| match f {
            PutFail::Full | PutFail::Busy => Fail::Retry,
            PutFail::Closed => Fail::Closed,
            PutFail::Died => Fail::Died,
            PutFail::Corrupt(why) => Fail::Corrupt(why),
        }))
    }

    /// Try to get a message; with `die_at`, die at that point if reached.
    pub fn try_get(&self, die_at: Option<Point>) -> Outcome<u64> {
        // SAFETY: as in `try_put`, for reading.
        let r = self.ring(die_at).try_get(|i| self.data[i].with(|p| unsafe { *p }));
        self.settle(r.map_err(|f| match f {
            GetFail::Empty | GetFail::Pending => Fail::Retry,
            GetFail::Closed => Fail::Closed,
            GetFail::Died => Fail::Died,
            GetFail::Corrupt(why) => Fail::Corrupt(why),
        }))
    }

    /// The outcome of a try: a thread stopped by its hook dies here; a corrupt ring fails the model.
    fn settle<T>(&self, r: Result<T, Fail>) -> Outcome<T> {
        match r {
            Ok(v) => Outcome::Ok(v),
            Err(Fail::Retry) => Outcome::Retry,
            Err(Fail::Closed) => Outcome::Closed,
            Err(Fail::Died) => {
                self.die();
                Outcome::Died
            }
            Err(Fail::Corrupt(why)) => panic!("model ring corrupt: {why}"),
        }
    }

    /// Close the ring.
    pub fn close(&self) {
        self.ring(None).close();
    }

    /// Messages counted as lost to dead threads.
    pub fn abandoned(&self) -> u64 {
        self.ring(None).abandoned()
    }

    /// Messages in the ring.
    pub fn len(&self) -> usize {
        self.ring(None).len()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
