//! `imap` and `imap_unordered`: lazy iterators over results, feeding the pool a bounded
//! window of chunks at a time (the engine is `stream.rs`, shared with the serde forms).

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;

use bytemuck::Pod;

use super::PoolError;
use super::api::{Pool, decode_vec, per_entry};
use super::stream::{Source, Stream, Unpack};
use super::task::{Tramp, map_tramp, tramp_addr};

/// `Pod` inputs, as their bytes.
pub(crate) struct PodSource<I>(I);

impl<A: Pod, I: Iterator<Item = A>> Source for PodSource<I> {
    fn next_into(&mut self, buf: &mut Vec<u8>) -> Option<Result<(), PoolError>> {
        let a = self.0.next()?;
        buf.extend_from_slice(bytemuck::bytes_of(&a));
        Some(Ok(()))
    }
}

/// `Pod` results, packed.
fn pod_unpack<R: Pod>(bytes: &[u8], count: usize, ready: &mut VecDeque<Result<R, PoolError>>) {
    if bytes.len() == count * std::mem::size_of::<R>() {
        ready.extend(decode_vec::<R>(bytes, count).into_iter().map(Ok));
    } else {
        let message = "a worker returned results of the wrong size".into();
        ready.push_back(Err(PoolError::TaskFailed { message }));
    }
}

/// Results of [`Pool::imap`] (in input order) or [`Pool::imap_unordered`] (as they finish).
///
/// Input is consumed lazily: at most about two chunks per queued entry of every worker are in
/// flight. Each item is `Ok(result)` or the error of its chunk.
///
/// Dropping the iterator before the end (for example `collect::<Result<Vec<_>, _>>()`
/// stopping at the first error) cancels the chunks in flight that have not started and waits
/// until none of them can still run, so that nothing of it races with what comes next.
#[must_use = "iterators are lazy: no task runs until it is consumed, and dropping it cancels the chunks in flight"]
pub struct Imap<'p, A: Pod, R: Pod, I: Iterator<Item = A>> {
    inner: Stream<PodSource<I>, R>,
    _pool: PhantomData<&'p Pool>,
}

impl<A: Pod, R: Pod, I: Iterator<Item = A>> std::fmt::Debug for Imap<'_, A, R, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl Pool {
    /// `f` over `items`, lazily, results in input order (Python's `imap`).
    ///
    /// ```
    /// let pool = shmkit::pool::Pool::new(2)?;
    /// let squares: Result<Vec<u64>, _> = pool.imap(|x: u64| x * x, 0..100, 8)?.collect();
    /// assert_eq!(squares?[99], 9801);
    /// # Ok::<(), shmkit::pool::PoolError>(())
    /// ```
    pub fn imap<A: Pod, R: Pod, I: IntoIterator<Item = A>>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> Result<Imap<'_, A, R, I::IntoIter>, PoolError> {
        self.make_imap(f, items.into_iter(), chunksize, true)
    }

    /// `f` over `items`, lazily, results as they finish (Python's `imap_unordered`).
    ///
    /// ```
    /// let pool = shmkit::pool::Pool::new(2)?;
    /// let mut got: Vec<u32> = pool.imap_unordered(|x: u32| x + 1, 0..10, 1)?.map(Result::unwrap).collect();
    /// got.sort();
    /// assert_eq!(got, (1..11).collect::<Vec<_>>());
    /// # Ok::<(), shmkit::pool::PoolError>(())
    /// ```
    pub fn imap_unordered<A: Pod, R: Pod, I: IntoIterator<Item = A>>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> Result<Imap<'_, A, R, I::IntoIter>, PoolError> {
        self.make_imap(f, items.into_iter(), chunksize, false)
    }

    fn make_imap<A: Pod, R: Pod, I: Iterator<Item = A>>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
        ordered: bool,
    ) -> Result<Imap<'_, A, R, I>, PoolError> {
        let per = per_entry::<A, R>(chunksize, self.core.shape().msg)?;
        let code = (tramp_addr!(Tramp, map_tramp::<A, R>), f as usize as u64);
        let unpack: Unpack<R> = pod_unpack::<R>;
        let inner = Stream::new(Arc::clone(&self.core), code, (PodSource(items), unpack), per, ordered);
        Ok(Imap { inner, _pool: PhantomData })
    }
}

impl<A: Pod, R: Pod, I: Iterator<Item = A>> Iterator for Imap<'_, A, R, I> {
    type Item = Result<R, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next_result()
    }
}
