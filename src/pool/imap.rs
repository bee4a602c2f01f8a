//! `imap` and `imap_unordered`: lazy iterators over results, feeding the pool a bounded
//! window of chunks at a time.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;

use bytemuck::Pod;

use super::api::{Pool, decode_vec, per_entry};
use super::dispatch::Job;
use super::sink::{Cell, Sink};
use super::task::{Tramp, map_tramp, tramp_addr};
use super::{PoolError, dispatch::Core};
use crate::sys::Deadline;

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
    pool: &'p Pool,
    func: u64,
    items: I,
    per: usize,
    window: usize,
    ordered: bool,
    pending: VecDeque<(Arc<Cell>, usize)>,
    staged: Option<Vec<A>>,
    ready: VecDeque<Result<R, PoolError>>,
    _r: PhantomData<fn() -> R>,
}

impl<A: Pod, R: Pod, I: Iterator<Item = A>> std::fmt::Debug for Imap<'_, A, R, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap").field("ordered", &self.ordered).field("in_flight", &self.pending.len()).finish()
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
        let shape = self.core.shape();
        let per = per_entry::<A, R>(chunksize, shape.msg)?;
        Ok(Imap {
            pool: self,
            func: f as usize as u64,
            items,
            per,
            window: (shape.workers * shape.depth).max(2),
            ordered,
            pending: VecDeque::new(),
            staged: None,
            ready: VecDeque::new(),
            _r: PhantomData,
        })
    }
}

impl<A: Pod, R: Pod, I: Iterator<Item = A>> Imap<'_, A, R, I> {
    /// Submit staged and new chunks while the window and the rings have room.
    fn feed(&mut self, core: &Core, d: &mut super::dispatch::Dispatch) -> Result<(), PoolError> {
        let tramp = tramp_addr!(Tramp, map_tramp::<A, R>);
        while self.pending.len() < self.window {
            let chunk = match self.staged.take() {
                Some(c) => c,
                None => {
                    let c: Vec<A> = self.items.by_ref().take(self.per).collect();
                    if c.is_empty() {
                        return Ok(());
                    }
                    c
                }
            };
            let bytes = [bytemuck::cast_slice::<A, u8>(&chunk)];
            let job = Job { tramp, func: self.func, count: chunk.len() as u32, args: &bytes };
            let cell = Arc::new(Cell::default());
            if !core.try_submit(d, &job, Sink::Cell(Arc::clone(&cell)))? {
                self.staged = Some(chunk);
                return Ok(());
            }
            self.pending.push_back((cell, chunk.len()));
        }
        Ok(())
    }

    fn unpack(&mut self, r: Option<Result<Vec<u8>, PoolError>>, count: usize) {
        match r {
            Some(Ok(bytes)) if bytes.len() == count * std::mem::size_of::<R>() => {
                self.ready.extend(decode_vec::<R>(&bytes, count).into_iter().map(Ok));
            }
            Some(Ok(_)) => self.ready.push_back(Err(PoolError::TaskFailed {
                message: "a worker returned results of the wrong size".into(),
            })),
            Some(Err(e)) => self.ready.push_back(Err(e)),
            None => {}
        }
    }
}

impl<A: Pod, R: Pod, I: Iterator<Item = A>> Iterator for Imap<'_, A, R, I> {
    type Item = Result<R, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(r) = self.ready.pop_front() {
            return Some(r);
        }
        let core = Arc::clone(&self.pool.core);
        let got = core.drive(Deadline::never(), |c, d| {
            self.feed(c, d)?;
            if self.pending.is_empty() {
                return Ok(Some(None));
            }
            let pick = if self.ordered {
                self.pending.front().is_some_and(|(cell, _)| cell.is_done()).then_some(0)
            } else {
                self.pending.iter().position(|(cell, _)| cell.is_done())
            };
            Ok(pick.map(Some))
        });
        match got {
            Err(e) => Some(Err(e)),
            Ok(None) => None,
            Ok(Some(i)) => {
                let (cell, count) = self.pending.remove(i)?;
                let r = cell.take();
                self.unpack(r, count);
                self.ready.pop_front()
            }
        }
    }
}

impl<A: Pod, R: Pod, I: Iterator<Item = A>> Drop for Imap<'_, A, R, I> {
    fn drop(&mut self) {
        if self.pending.iter().any(|(cell, _)| !cell.is_done()) {
            let pending = &self.pending;
            self.pool.core.settle(&|sink: &Sink| pending.iter().any(|(cell, _)| sink.is_cell(cell)));
        }
    }
}
