//! `map_chunks`: hand each worker its own chunk of a [`SharedArray`] by index arithmetic,
//! zero copy. The task message carries only the array's name, identity and the chunk's
//! range; the worker maps the array once (cached) and takes a robust range claim
//! (`claim` for `&[T]`, `claim_mut` for `&mut [T]`), so no two workers can ever hold
//! overlapping `&mut` chunks, and a worker killed mid-chunk frees its claim.

use std::any::Any;
use std::cell::RefCell;
use std::os::fd::AsFd;
use std::time::Duration;

use bytemuck::Pod;

use super::PoolError;
use super::api::{Pool, decode_vec};
use super::task::{Tramp, tramp_addr};
use crate::shared::{Element, SharedArray};

/// Bytes of one chunk record: ino, dev, start, end, name length, name.
pub(crate) const RECORD: usize = 320;
const NAME_CAP: usize = RECORD - 40;

/// How long a worker waits for a chunk someone else holds a conflicting claim on.
const CLAIM_WAIT: Duration = Duration::from_secs(60);

struct Cached {
    name: String,
    ino: u64,
    dev: u64,
    array: Box<dyn Any>,
}

thread_local! {
    /// The array this worker mapped last (one entry: repeated calls over one array are the
    /// common case, and an old array is released as soon as another is used).
    static ARRAY: RefCell<Option<Cached>> = const { RefCell::new(None) };
}

fn identity(seg: &crate::Segment) -> Result<(u64, u64), PoolError> {
    let st = crate::sys::fd::fstat(seg.fd().as_fd()).map_err(|e| PoolError::Os { op: "fstat", source: e })?;
    Ok((st.st_ino as u64, st.st_dev as u64))
}

struct Record<'a> {
    ino: u64,
    dev: u64,
    start: usize,
    end: usize,
    name: &'a str,
}

fn decode(args: &[u8]) -> Result<Record<'_>, String> {
    if args.len() < RECORD {
        return Err("the chunk record is truncated".into());
    }
    let word = |i: usize| u64::from_ne_bytes(args[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    let len = (word(4) as usize).min(NAME_CAP);
    let name = std::str::from_utf8(&args[40..40 + len]).map_err(|_| "the array name is not UTF-8".to_owned())?;
    Ok(Record { ino: word(0), dev: word(1), start: word(2) as usize, end: word(3) as usize, name })
}

/// Run `f` with this worker's mapping of the array the record names.
fn with_array<T: Element, X>(rec: &Record<'_>, f: impl FnOnce(&SharedArray<T>) -> X) -> Result<X, String> {
    ARRAY.with(|slot| {
        let mut slot = slot.borrow_mut();
        let hit = slot.as_ref().is_some_and(|c| {
            c.name == rec.name && c.ino == rec.ino && c.dev == rec.dev && c.array.is::<SharedArray<T>>()
        });
        if !hit {
            *slot = None; // release the old mapping first
            let array = SharedArray::<T>::open(rec.name).map_err(|e| format!("cannot open {}: {e}", rec.name))?;
            let (ino, dev) = identity(array.segment()).map_err(|e| e.to_string())?;
            if (ino, dev) != (rec.ino, rec.dev) {
                return Err(format!("{} names another array now (it was removed and recreated)", rec.name));
            }
            *slot = Some(Cached { name: rec.name.to_owned(), ino, dev, array: Box::new(array) });
        }
        let array = slot.as_ref().and_then(|c| c.array.downcast_ref::<SharedArray<T>>()).ok_or("cache miss")?;
        Ok(f(array))
    })
}

/// # Safety
///
/// `func` is the address of an `fn(usize, &[T]) -> R` of this binary image.
pub(crate) unsafe fn chunk_tramp<T: Element, R: Pod>(
    func: u64,
    args: &[u8],
    _count: u32,
    out: &mut [u8],
) -> Result<usize, String> {
    // SAFETY: per this function's contract.
    let f = unsafe { std::mem::transmute::<usize, fn(usize, &[T]) -> R>(func as usize) };
    let rec = decode(args)?;
    let r = with_array::<T, _>(&rec, |a| {
        let chunk = a.claim_timeout(rec.start..rec.end, CLAIM_WAIT).map_err(|e| e.to_string())?;
        Ok::<R, String>(f(rec.start, &chunk))
    })??;
    let bytes = bytemuck::bytes_of(&r);
    out.get_mut(..bytes.len()).ok_or("the result does not fit the task message")?.copy_from_slice(bytes);
    Ok(bytes.len())
}

/// # Safety
///
/// `func` is the address of an `fn(usize, &mut [T])` of this binary image.
pub(crate) unsafe fn chunk_mut_tramp<T: Element>(
    func: u64,
    args: &[u8],
    _count: u32,
    _out: &mut [u8],
) -> Result<usize, String> {
    // SAFETY: per this function's contract.
    let f = unsafe { std::mem::transmute::<usize, fn(usize, &mut [T])>(func as usize) };
    let rec = decode(args)?;
    with_array::<T, _>(&rec, |a| {
        let mut chunk = a.claim_mut_timeout(rec.start..rec.end, CLAIM_WAIT).map_err(|e| e.to_string())?;
        f(rec.start, &mut chunk);
        Ok::<(), String>(())
    })??;
    Ok(0)
}

impl Pool {
    /// `f(start, &chunk)` for every `chunk_len`-element chunk of `array` (the last may be
    /// shorter), each in some worker, with no copy: the worker maps the array and reads its
    /// chunk in place under a shared claim. Returns the per-chunk results in order: the
    /// reduce form (sum them, take the max, …).
    ///
    /// The array must be named (`SharedArray::create(None, n)` picks a random name), and
    /// the caller must not hold a conflicting claim on it meanwhile (a worker waits up to
    /// 60 s for one, then the chunk fails with [`PoolError::TaskFailed`]).
    ///
    /// ```
    /// use shmkit::{SharedArray, pool::Pool};
    /// let pool = Pool::new(2)?;
    /// let a = SharedArray::<f64>::create(None, 1 << 16)?;
    /// pool.map_chunks_mut(&a, 4096, |start, chunk: &mut [f64]| {
    ///     for (i, x) in chunk.iter_mut().enumerate() {
    ///         *x = (start + i) as f64;
    ///     }
    /// })?;
    /// let sums = pool.map_chunks(&a, 4096, |_, chunk: &[f64]| chunk.iter().sum::<f64>())?;
    /// assert_eq!(sums.iter().sum::<f64>(), (0..1 << 16).map(|i| i as f64).sum::<f64>());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map_chunks<T: Element, R: Pod>(
        &self,
        array: &SharedArray<T>,
        chunk_len: usize,
        f: fn(usize, &[T]) -> R,
    ) -> Result<Vec<R>, PoolError> {
        let tramp = tramp_addr!(Tramp, chunk_tramp::<T, R>);
        let n = self.run_chunks(array, chunk_len, tramp, f as usize as u64, std::mem::size_of::<R>())?;
        Ok(decode_vec(&n.1, n.0))
    }

    /// `f(start, &mut chunk)` for every `chunk_len`-element chunk of `array`, each in some
    /// worker, in place: each worker holds an exclusive claim on its own chunk. See
    /// [`map_chunks`](Self::map_chunks).
    pub fn map_chunks_mut<T: Element>(
        &self,
        array: &SharedArray<T>,
        chunk_len: usize,
        f: fn(usize, &mut [T]),
    ) -> Result<(), PoolError> {
        let tramp = tramp_addr!(Tramp, chunk_mut_tramp::<T>);
        self.run_chunks(array, chunk_len, tramp, f as usize as u64, 0).map(drop)
    }

    fn run_chunks<T: Element>(
        &self,
        array: &SharedArray<T>,
        chunk_len: usize,
        tramp: u64,
        func: u64,
        res_size: usize,
    ) -> Result<(usize, Vec<u8>), PoolError> {
        let (chunks, records) = self.chunk_records(array, chunk_len, res_size)?;
        let out = self.run_batch(chunks, RECORD, &records, 1, tramp, func, res_size)?;
        Ok((chunks, out))
    }

    /// One `RECORD`-byte task record per `chunk_len`-element chunk of `array` (and how many
    /// chunks), checked against the message size for results of `res_size` bytes.
    pub(crate) fn chunk_records<T: Element>(
        &self,
        array: &SharedArray<T>,
        chunk_len: usize,
        res_size: usize,
    ) -> Result<(usize, Vec<u8>), PoolError> {
        let name = array.name().ok_or(PoolError::AnonymousArray)?;
        let msg = self.core.shape().msg;
        if name.len() > NAME_CAP || RECORD > msg || res_size > msg {
            return Err(PoolError::MessageTooLarge { what: "a chunk record", size: RECORD.max(res_size), limit: msg });
        }
        let (ino, dev) = identity(array.segment())?;
        let chunk_len = chunk_len.max(1);
        let chunks = array.len().div_ceil(chunk_len);
        let mut records = vec![0u8; chunks * RECORD];
        for (i, rec) in records.chunks_exact_mut(RECORD).enumerate() {
            let (start, end) = (i * chunk_len, ((i + 1) * chunk_len).min(array.len()));
            for (k, v) in [ino, dev, start as u64, end as u64, name.len() as u64].into_iter().enumerate() {
                rec[k * 8..k * 8 + 8].copy_from_slice(&v.to_ne_bytes());
            }
            rec[40..40 + name.len()].copy_from_slice(name.as_bytes());
        }
        Ok((chunks, records))
    }
}
