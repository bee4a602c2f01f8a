//! `map_chunks`: hand each worker its own chunk of a [`SharedArray`] by index arithmetic,
//! zero copy. The task message carries only the array's handle (`ArrayRef`: name, identity,
//! shape) and the chunk's range; the worker maps the array once (cached) and takes a robust
//! range claim
//! (`claim` for `&[T]`, `claim_mut` for `&mut [T]`), so no two workers can ever hold
//! overlapping `&mut` chunks, and a worker killed mid-chunk frees its claim.

use bytemuck::Pod;

use super::PoolError;
use super::api::{Pool, decode_vec};
use super::context::{CLAIM_WAIT, Record, fits, open_record, records};
use super::task::{Task, Tramp, put_result, tramp_addr, user_fn};
use crate::shared::{Element, SharedArray};

/// How many chunks ran, and their result bytes.
type Chunked = Result<(usize, Vec<u8>), PoolError>;
/// How many records, the bytes of one, all of them.
type Records = Result<(usize, usize, Vec<u8>), PoolError>;

/// # Safety
///
/// `func` is the address of an `fn(usize, &[T]) -> R` of this binary image.
pub(crate) unsafe fn chunk_tramp<T: Element, R: Pod>(func: u64, t: Task<'_>) -> Result<usize, String> {
    // SAFETY: per this function's contract.
    let f: fn(usize, &[T]) -> R = unsafe { user_fn(func) };
    let (Record { start, end, .. }, array) = open_record::<T>(t.args)?;
    let chunk = array.claim_timeout(start..end, CLAIM_WAIT).map_err(|e| e.to_string())?;
    put_result(t.out, &f(start, &chunk))
}

/// # Safety
///
/// `func` is the address of an `fn(usize, &mut [T])` of this binary image.
pub(crate) unsafe fn chunk_mut_tramp<T: Element>(func: u64, t: Task<'_>) -> Result<usize, String> {
    // SAFETY: per this function's contract.
    let f: fn(usize, &mut [T]) = unsafe { user_fn(func) };
    let (Record { start, end, .. }, array) = open_record::<T>(t.args)?;
    let mut chunk = array.claim_mut_timeout(start..end, CLAIM_WAIT).map_err(|e| e.to_string())?;
    f(start, &mut chunk);
    Ok(0)
}

/// A chunk kernel as it travels: its trampoline, the user's `fn`, and its result's size.
#[derive(Clone, Copy)]
pub(crate) struct ChunkCall {
    pub tramp: u64,
    pub func: u64,
    pub res_size: usize,
}

impl ChunkCall {
    /// `f(start, &chunk) -> R`, under a shared claim.
    pub fn read<T: Element, R: Pod>(f: fn(usize, &[T]) -> R) -> Self {
        let tramp = tramp_addr!(Tramp, chunk_tramp::<T, R>);
        ChunkCall { tramp, func: f as usize as u64, res_size: std::mem::size_of::<R>() }
    }

    /// `f(start, &mut chunk)`, under an exclusive claim.
    pub fn write<T: Element>(f: fn(usize, &mut [T])) -> Self {
        ChunkCall { tramp: tramp_addr!(Tramp, chunk_mut_tramp::<T>), func: f as usize as u64, res_size: 0 }
    }
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
        let (n, out) = self.run_chunks(array, chunk_len, ChunkCall::read(f))?;
        Ok(decode_vec(&out, n))
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
        self.run_chunks(array, chunk_len, ChunkCall::write(f)).map(drop)
    }

    /// Run `call` over every `chunk_len`-element chunk of `array`: (chunks, result bytes).
    fn run_chunks<T: Element>(&self, array: &SharedArray<T>, chunk_len: usize, call: ChunkCall) -> Chunked {
        let (chunks, step, records) = self.chunk_records(array, chunk_len, call)?;
        let out = self.run_batch(chunks, step, &records, 1, call.tramp, call.func, call.res_size)?;
        Ok((chunks, out))
    }

    /// One task record per `chunk_len`-element chunk of `array` (how many chunks, the bytes
    /// of one record, the records), checked against the message size.
    pub(crate) fn chunk_records<T: Element>(
        &self,
        array: &SharedArray<T>,
        chunk_len: usize,
        call: ChunkCall,
    ) -> Records {
        let (chunks, step, records) = records(array, array.len(), chunk_len, &[])?;
        fits(self, step, call.res_size)?;
        Ok((chunks, step, records))
    }
}
