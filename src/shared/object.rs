//! `SharedObject<S>`: one [`ShmSafe`] value — a shmkit primitive, or your own
//! `#[repr(C)]` struct of primitives and atomics — in its own segment.
//!
//! The segment (kind `object`) holds the header and then `S`, zero-filled. `create` runs
//! the caller's initialiser on `&mut S` *before* the segment is published, so nobody can
//! see a half-initialised object; `open` checks the kind and the type fingerprint (size,
//! alignment and Rust type path, see [`object_type_info`]) so that a process asking for
//! another type gets an error, not a reinterpretation.

use std::marker::PhantomData;
use std::ops::Deref;

use crate::segment::kind::{Create, SegmentKind, debug_handle, segment_handle};
use crate::segment::{Expect, Kind, Layout, Segment, SegmentError, TypeInfo};
use crate::sync::ShmSafe;

/// FNV-1a over `bytes`: stable across builds and machines. Type names are shortened with it,
/// and the immutable records of queues, dicts and lists carry it as a check word, so that a
/// corrupted field is reported instead of believed.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The fingerprint stored for `S`: size, alignment, and `std::any::type_name::<S>()`
/// (shortened to 56 bytes with a hash of the full name when longer). Both sides must be
/// built with the same definition of `S`, under the same path.
pub fn object_type_info<S>() -> TypeInfo {
    let full = std::any::type_name::<S>();
    let name = if full.len() <= crate::segment::header::MAX_TYPE_NAME {
        full.to_owned()
    } else {
        let hash = fnv1a(full.as_bytes());
        let mut cut = 39;
        while !full.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}~{hash:016x}", &full[..cut])
    };
    TypeInfo { size: std::mem::size_of::<S>() as u64, align: std::mem::align_of::<S>() as u32, name }
}

/// One `S` in shared memory, shared by reference between processes: `Deref<Target = S>`.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use shmkit::shared::SharedObject;
/// use shmkit::sync::{Barrier, Mutex, ShmSafe};
///
/// #[repr(C)]
/// struct Job {
///     start: Barrier,
///     total: Mutex<f64>,
///     ticks: AtomicU64,
/// }
/// // SAFETY: #[repr(C)] and made only of ShmSafe fields.
/// unsafe impl ShmSafe for Job {}
///
/// let job = SharedObject::<Job>::create(None, |j| j.start = Barrier::new(1))?;
/// let peer = SharedObject::<Job>::open(job.name().unwrap())?; // as another process would
/// peer.start.wait()?;
/// *peer.total.lock()? += 2.5;
/// peer.ticks.fetch_add(1, Ordering::Relaxed);
/// assert_eq!(*job.total.lock()?, 2.5);
/// assert!(SharedObject::<Mutex<f64>>::open(job.name().unwrap()).is_err()); // another type
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct SharedObject<S: ShmSafe> {
    seg: Segment,
    _s: PhantomData<S>,
}

impl<S: ShmSafe> std::fmt::Debug for SharedObject<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_handle(f, "SharedObject", &self.seg, std::any::type_name::<S>()).finish()
    }
}

impl<S: ShmSafe> SegmentKind for SharedObject<S> {
    type Error = SegmentError;

    fn expect() -> Expect {
        Expect { kind: Some(Kind::Object), elem: Some(object_type_info::<S>()), min_control_len: 0 }
    }

    fn attach(seg: Segment) -> Result<Self, SegmentError> {
        Self::from_segment(seg)
    }
}

impl<S: ShmSafe, F: FnOnce(&mut S)> Create<F> for SharedObject<S> {
    fn layout(_: &F) -> Result<Layout, SegmentError> {
        if std::mem::size_of::<S>() == 0 {
            return Err(SegmentError::ZeroLength);
        }
        Ok(Layout {
            kind: Kind::Object,
            elem: object_type_info::<S>(),
            elem_count: 1,
            control_len: 0,
            payload_align: std::mem::align_of::<S>().max(64),
        })
    }

    unsafe fn init(seg: &Segment, init: F) -> Result<(), SegmentError> {
        // SAFETY: the payload holds size_of::<S>() zero bytes, aligned for S (payload
        // alignment is at least align_of::<S>() in a page-aligned mapping); all-zero is a
        // valid S (ShmSafe); the segment is not published yet (the caller's contract), so
        // this is the only reference to it in any process.
        init(unsafe { &mut *seg.as_ptr().cast::<S>() });
        Ok(())
    }
}

segment_handle! {
    impl[S: ShmSafe] SharedObject<S>,
    "object",
    SegmentError, seg,
    (init: impl FnOnce(&mut S)) => init
}

impl<S: ShmSafe> SharedObject<S> {
    /// Wrap a segment opened some other way (for example [`Segment::from_fd`] in a
    /// re-executed child), checking its kind, type and size.
    pub fn from_segment(seg: Segment) -> Result<Self, SegmentError> {
        let name = seg.name().unwrap_or("").to_owned();
        let Some(h) = seg.header() else { return Err(SegmentError::NotShmkit { name }) };
        if h.kind != Kind::Object {
            return Err(SegmentError::KindMismatch { name, expected: Kind::Object, found: h.kind.name().to_owned() });
        }
        let want = object_type_info::<S>();
        if h.elem != want {
            return Err(SegmentError::TypeMismatch { name, expected: want, found: h.elem.clone() });
        }
        let aligned = (seg.as_ptr() as usize).is_multiple_of(std::mem::align_of::<S>());
        if seg.len() < std::mem::size_of::<S>() || !aligned {
            return Err(SegmentError::Corrupt { name, reason: "the payload cannot hold the object".into() });
        }
        Ok(SharedObject { seg, _s: PhantomData })
    }
}

impl<S: ShmSafe> Deref for SharedObject<S> {
    type Target = S;
    fn deref(&self) -> &S {
        // SAFETY: validated at construction: the payload holds an aligned, initialised S
        // for as long as the mapping (owned by `self`) lives; ShmSafe types are used only
        // through `&S` after publication, with cross-process interior mutability.
        unsafe { &*self.seg.as_ptr().cast::<S>() }
    }
}
