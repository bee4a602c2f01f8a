//! Kernels with context: [`ArrayRef`], a `Pod` handle to a named [`SharedArray`] that a
//! task carries and a worker resolves to its cached mapping, [`TaskData`] for the context
//! values handed to every call, and [`Pool::map_chunks_with`] /
//! [`Pool::map_chunks_mut_with`], which split an N-dimensional array along its first axis
//! into bands of rows.
//!
//! # Why `fn`, not closures
//!
//! A task crosses into another process as the address of a function in this binary image
//! (valid there because the worker is a fork of it) plus argument bytes. A closure's
//! captures live in *this* process's memory: a `&alpha` captured by a rayon closure is an
//! address that means nothing in a worker, and a captured `Vec` or `Arc` owns heap memory
//! the worker never sees. So tasks are `fn` items or non-capturing closures, and what a
//! closure would capture travels as data: a context value (`ctx`, any `Pod` type, or any
//! serde type wrapped in `Serde` under feature `serde`) and [`ArrayRef`]s to shared
//! arrays. Statics set after the pool (or the fork server) started are invisible to the
//! workers for the same reason: pass them as context.
//!
//! ```
//! use shmkit::pool::{ArrayRef, Pool};
//! use shmkit::{Claim, Rows, SharedArray};
//!
//! #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
//! #[repr(C)]
//! struct Scale { factor: f64, src: ArrayRef<f64> }
//!
//! // out[i, j] = factor * src[i, j], one band of rows per call, any worker.
//! fn scale(row0: usize, out: &mut shmkit::ClaimMut<'_, f64>, ctx: &Scale) {
//!     let src = ctx.src.resolve().expect("open src");            // cached in the worker
//!     let rows = out.shape().rows();
//!     let input = src.claim(Rows(row0..row0 + rows)).expect("claim src");
//!     for (o, i) in out.iter_mut().zip(input.iter()) {
//!         *o = ctx.factor * i;
//!     }
//! }
//!
//! let pool = Pool::new(2)?;
//! let src = SharedArray::<f64>::create(None, [64, 32])?;
//! src.write()?.fill(2.0);
//! let out = SharedArray::<f64>::create(None, [64, 32])?;
//! let ctx = Scale { factor: 1.5, src: ArrayRef::new(&src)? };
//! pool.map_chunks_mut_with(&out, 16, &ctx, scale)?;
//! let sums = pool.map_chunks_with(&out, 16, &(), |_, band: &Claim<'_, f64>, _: &()| band.iter().sum::<f64>())?;
//! assert_eq!(sums.iter().sum::<f64>(), 64.0 * 32.0 * 3.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::marker::PhantomData;
use std::os::fd::AsFd;
use std::rc::Rc;
use std::time::Duration;

use bytemuck::{Pod, Zeroable};

use super::PoolError;
use super::api::{Pool, decode_vec};
use super::task::{Task, Tramp, put_result, tramp_addr, user_fn};
use crate::shared::{Claim, ClaimMut, Element, Rows, Shape, SharedArray};

/// How long a worker waits for a chunk someone else holds a conflicting claim on.
pub(crate) const CLAIM_WAIT: Duration = Duration::from_secs(60);

/// Longest array name (with its leading `/`) an [`ArrayRef`] holds: random names take 40
/// bytes; the bound keeps a task with a record and two handles inside the default 1 KiB
/// message.
pub const ARRAY_REF_NAME_CAP: usize = 128;
const NAME_CAP: usize = ARRAY_REF_NAME_CAP;

/// A `Pod` handle to a named [`SharedArray`]: its name, identity (inode and device, so a
/// name removed and reused is refused) and shape. Put it in a task's argument or context;
/// in the worker, [`resolve`](Self::resolve) gives the array from the worker's cache of
/// mappings (opened once per worker, not per task). 216 bytes; names up to
/// [`ARRAY_REF_NAME_CAP`] bytes.
#[repr(C)]
pub struct ArrayRef<T> {
    ino: u64,
    dev: u64,
    name_len: u64,
    shape: [u64; 8],
    name: [u8; NAME_CAP],
    _t: PhantomData<T>,
}

impl<T> Clone for ArrayRef<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for ArrayRef<T> {}

// SAFETY: `repr(C)` of u64 words and a byte array whose length is a multiple of 8: no
// padding, every bit pattern valid (all fields are checked when resolved); the marker is
// zero-sized.
unsafe impl<T: Element> Zeroable for ArrayRef<T> {}
// SAFETY: as above; `T: Element` is `'static + Copy`, so the whole type is.
unsafe impl<T: Element> Pod for ArrayRef<T> {}

impl<T> std::fmt::Debug for ArrayRef<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.name.get(..self.name_len as usize).map(String::from_utf8_lossy);
        f.debug_struct("ArrayRef").field("name", &name).field("ino", &self.ino).finish()
    }
}

/// The inode and device of a segment's file.
pub(crate) fn identity(seg: &crate::Segment) -> Result<(u64, u64), PoolError> {
    let st = crate::sys::fd::fstat(seg.fd().as_fd()).map_err(|e| PoolError::Os { op: "fstat", source: e })?;
    Ok((st.st_ino as u64, st.st_dev as u64))
}

fn failed(message: String) -> PoolError {
    PoolError::TaskFailed { message }
}

impl<T: Element> ArrayRef<T> {
    /// A handle to `array`, with its current shape. The array must be named
    /// ([`PoolError::AnonymousArray`] otherwise), with at most [`ARRAY_REF_NAME_CAP`] bytes
    /// ([`PoolError::ArrayNameTooLong`]).
    pub fn new(array: &SharedArray<T>) -> Result<Self, PoolError> {
        let name = array.name().ok_or(PoolError::AnonymousArray)?;
        let mut r = ArrayRef::zeroed();
        let too_long = || PoolError::ArrayNameTooLong { name: name.to_owned(), limit: NAME_CAP };
        r.name.get_mut(..name.len()).ok_or_else(too_long)?.copy_from_slice(name.as_bytes());
        r.name_len = name.len() as u64;
        (r.ino, r.dev) = identity(array.segment())?;
        r.shape = array.shape().to_record();
        Ok(r)
    }

    /// The array's name.
    pub fn name(&self) -> Result<&str, PoolError> {
        let bytes = self.name.get(..self.name_len as usize).ok_or_else(|| failed("an ArrayRef is corrupt".into()))?;
        std::str::from_utf8(bytes).map_err(|_| failed("an ArrayRef's name is not UTF-8".into()))
    }

    /// The shape the handle was made with.
    pub fn shape(&self) -> Result<Shape, PoolError> {
        let dims = self.shape[1..].iter().take(self.shape[0] as usize);
        let len = dims.copied().try_fold(1u64, u64::checked_mul).unwrap_or(0);
        Shape::from_record(&self.shape, len).map_err(|e| failed(format!("an ArrayRef is corrupt: {e}")))
    }

    /// The array, from this thread's cache of mappings (opened on first use): in a pool
    /// worker, every task after the first that names this array reuses the mapping. The
    /// handle has the shape the `ArrayRef` was made with. The name now naming another
    /// segment (removed and recreated) is an error, as is any failure to open it.
    pub fn resolve(&self) -> Result<Rc<SharedArray<T>>, PoolError> {
        let key = Key { ty: TypeId::of::<T>(), ino: self.ino, dev: self.dev, shape: self.shape };
        let name = self.name()?;
        let hit = CACHE.with(|c| {
            let mut c = c.borrow_mut();
            let at = c.iter().position(|e| e.key == key && e.name == name)?;
            let e = c.remove(at);
            let array = Rc::clone(&e.array);
            c.insert(0, e); // most recent first
            Some(array)
        });
        let array = match hit {
            Some(a) => a,
            None => {
                let array = SharedArray::<T>::open(name).map_err(|e| failed(format!("cannot open {name}: {e}")))?;
                if identity(array.segment())? != (self.ino, self.dev) {
                    return Err(failed(format!("{name} names another array now (it was removed and recreated)")));
                }
                let array = array.reshape(self.shape()?).map_err(|e| failed(e.to_string()))?;
                let array: Rc<dyn Any> = Rc::new(array);
                CACHE.with(|c| {
                    let mut c = c.borrow_mut();
                    c.truncate(CACHED - 1); // the least recently used mapping goes
                    c.insert(0, Cached { key, name: name.to_owned(), array: Rc::clone(&array) });
                });
                array
            }
        };
        array.downcast::<SharedArray<T>>().map_err(|_| failed("internal: the array cache is inconsistent".into()))
    }
}

#[derive(PartialEq, Eq)]
struct Key {
    ty: TypeId,
    ino: u64,
    dev: u64,
    shape: [u64; 8],
}

struct Cached {
    key: Key,
    name: String,
    array: Rc<dyn Any>,
}

/// Mappings a worker keeps: enough for a task reading a few arrays (a halo, a second
/// buffer) without reopening any.
const CACHED: usize = 8;

thread_local! {
    static CACHE: RefCell<Vec<Cached>> = const { RefCell::new(Vec::new()) };
}

/// A value that travels with a task: every `Pod` type as its bytes, and under feature
/// `serde` any serde type wrapped in `Serde` (postcard-encoded).
pub trait TaskData: Sized {
    /// Append the encoding to `out`.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), PoolError>;
    /// Decode a value from exactly `bytes`.
    fn decode(bytes: &[u8]) -> Result<Self, String>;
}

impl<T: Pod> TaskData for T {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), PoolError> {
        out.extend_from_slice(bytemuck::bytes_of(self));
        Ok(())
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        bytemuck::try_pod_read_unaligned(bytes).map_err(|_| "the task's context has the wrong size".to_owned())
    }
}

/// A serde value as task data (feature `serde`): `ctx: &Serde(params)` hands every call
/// `&Serde<P>`; the value is `ctx.0`.
#[cfg(feature = "serde")]
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Serde<T>(pub T);

#[cfg(feature = "serde")]
impl<T: serde::Serialize + serde::de::DeserializeOwned> TaskData for Serde<T> {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), PoolError> {
        let bytes = postcard::to_allocvec(&self.0).map_err(|e| failed(format!("cannot encode the context: {e}")))?;
        out.extend_from_slice(&bytes);
        Ok(())
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        postcard::from_bytes(bytes).map(Serde).map_err(|e| format!("cannot decode the context: {e}"))
    }
}

/// Bytes of a chunk record's fixed part: start, end, the array's handle.
pub(crate) const RECORD: usize = 16 + std::mem::size_of::<ArrayRef<u8>>();

/// The records of `array` split into `[start, end)` pieces of `per` units out of `units`,
/// each followed by `tail` (the context): `(pieces, step, bytes)`.
pub(crate) fn records<T: Element>(
    array: &SharedArray<T>,
    units: usize,
    per: usize,
    tail: &[u8],
) -> Result<(usize, usize, Vec<u8>), PoolError> {
    let aref = bytemuck::bytes_of(&ArrayRef::new(array)?).to_vec();
    let per = per.max(1);
    let pieces = units.div_ceil(per);
    let step = RECORD + tail.len();
    let mut bytes = Vec::with_capacity(pieces * step);
    for i in 0..pieces {
        bytes.extend_from_slice(&((i * per) as u64).to_ne_bytes());
        bytes.extend_from_slice(&(((i + 1) * per).min(units) as u64).to_ne_bytes());
        bytes.extend_from_slice(&aref);
        bytes.extend_from_slice(tail);
    }
    Ok((pieces, step, bytes))
}

/// A decoded chunk record: `[start, end)`, the array's handle, and the bytes after it.
pub(crate) struct Record<'a, T> {
    pub start: usize,
    pub end: usize,
    pub array: ArrayRef<T>,
    pub tail: &'a [u8],
}

/// Decode the record at the start of a task's argument bytes.
fn decode_record<T: Element>(args: &[u8]) -> Result<Record<'_, T>, String> {
    if args.len() < RECORD {
        return Err("the chunk record is truncated".into());
    }
    let word = |i: usize| u64::from_ne_bytes(args[i * 8..i * 8 + 8].try_into().unwrap_or_default()) as usize;
    let array = bytemuck::pod_read_unaligned(&args[16..RECORD]);
    Ok(Record { start: word(0), end: word(1), array, tail: &args[RECORD..] })
}

/// Decode the record at the start of a task's argument bytes and resolve its array.
pub(crate) fn open_record<T: Element>(args: &[u8]) -> Result<(Record<'_, T>, Rc<SharedArray<T>>), String> {
    let record = decode_record::<T>(args)?;
    let array = record.array.resolve().map_err(|e| e.to_string())?;
    Ok((record, array))
}

/// Check that `step` bytes of argument and `res` bytes of result fit a task message.
pub(crate) fn fits(pool: &Pool, step: usize, res: usize) -> Result<(), PoolError> {
    let msg = pool.core.shape().msg;
    if step > msg {
        return Err(PoolError::MessageTooLarge { what: "a chunk record (with its context)", size: step, limit: msg });
    }
    if res > msg {
        return Err(PoolError::MessageTooLarge { what: "a chunk's result", size: res, limit: msg });
    }
    Ok(())
}

/// # Safety
///
/// `func` is the address of an `fn(usize, &Claim<T>, &C) -> R` of this binary image.
unsafe fn rows_tramp<T: Element, C: TaskData, R: Pod>(func: u64, t: Task<'_>) -> Result<usize, String> {
    // SAFETY: per this function's contract.
    let f: fn(usize, &Claim<'_, T>, &C) -> R = unsafe { user_fn(func) };
    let (Record { start, end, tail, .. }, array) = open_record::<T>(t.args)?;
    let ctx = C::decode(tail)?;
    let band = array.claim_timeout(Rows(start..end), CLAIM_WAIT).map_err(|e| e.to_string())?;
    put_result(t.out, &f(start, &band, &ctx))
}

/// # Safety
///
/// `func` is the address of an `fn(usize, &mut ClaimMut<T>, &C)` of this binary image.
unsafe fn rows_mut_tramp<T: Element, C: TaskData>(func: u64, t: Task<'_>) -> Result<usize, String> {
    // SAFETY: per this function's contract.
    let f: fn(usize, &mut ClaimMut<'_, T>, &C) = unsafe { user_fn(func) };
    let (Record { start, end, tail, .. }, array) = open_record::<T>(t.args)?;
    let ctx = C::decode(tail)?;
    let mut band = array.claim_mut_timeout(Rows(start..end), CLAIM_WAIT).map_err(|e| e.to_string())?;
    f(start, &mut band, &ctx);
    Ok(0)
}

impl Pool {
    /// `f(first_row, &band, &ctx)` for every band of `rows` rows of `array` (split along
    /// its first axis; the last band may be shorter), each in some worker, zero copy: the
    /// worker reads its band in place under a shared claim whose
    /// [`shape`](Claim::shape) is `[rows, dims[1..]]` (with feature `ndarray`,
    /// `band.view::<Ix2>()`). Every call gets the same context `ctx`: coefficients, the step
    /// number, [`ArrayRef`]s to other arrays. Returns the per-band results in order.
    ///
    /// The array must be named; a record plus the encoded context must fit the pool's task
    /// message ([`PoolError::MessageTooLarge`] names the limit; raise
    /// [`PoolBuilder::message_size`](super::PoolBuilder::message_size)).
    pub fn map_chunks_with<T: Element, C: TaskData, R: Pod>(
        &self,
        array: &SharedArray<T>,
        rows: usize,
        ctx: &C,
        f: fn(usize, &Claim<'_, T>, &C) -> R,
    ) -> Result<Vec<R>, PoolError> {
        let mut tail = Vec::new();
        ctx.encode(&mut tail)?;
        let (n, step, bytes) = records(array, array.shape().rows(), rows, &tail)?;
        fits(self, step, std::mem::size_of::<R>())?;
        let tramp = tramp_addr!(Tramp, rows_tramp::<T, C, R>);
        let out = self.run_batch(n, step, &bytes, 1, tramp, f as usize as u64, std::mem::size_of::<R>())?;
        Ok(decode_vec(&out, n))
    }

    /// `f(first_row, &mut band, &ctx)` for every band of `rows` rows of `array`, each in
    /// some worker, in place under an exclusive claim. See
    /// [`map_chunks_with`](Self::map_chunks_with).
    pub fn map_chunks_mut_with<T: Element, C: TaskData>(
        &self,
        array: &SharedArray<T>,
        rows: usize,
        ctx: &C,
        f: fn(usize, &mut ClaimMut<'_, T>, &C),
    ) -> Result<(), PoolError> {
        let mut tail = Vec::new();
        ctx.encode(&mut tail)?;
        let (n, step, bytes) = records(array, array.shape().rows(), rows, &tail)?;
        fits(self, step, 0)?;
        let tramp = tramp_addr!(Tramp, rows_mut_tramp::<T, C>);
        self.run_batch(n, step, &bytes, 1, tramp, f as usize as u64, 0).map(drop)
    }
}
