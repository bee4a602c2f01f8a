//! `imap_results`: [`map_results`](super::Pool::map_results) over an iterator of any length
//! (an endless stream of fuzz inputs), results in input order as they come.

use std::marker::PhantomData;
use std::sync::Arc;

use bytemuck::Pod;

use super::api::{Pool, per_entry};
use super::results::{Board, Feed, ItemOptions, decode_one};
use super::sink::Sink;
use super::task::{Tramp, map_tramp, tramp_addr};
use super::{PoolError, TaskError};
use crate::sys::Deadline;

/// The iterator of [`Pool::imap_results`]: one `Result<R, TaskError>` per input, in input
/// order. It takes inputs from its source only as workers have room (at most a window of
/// `processes × queue depth` tasks ahead of the consumer), so the source may be endless.
///
/// If the pool stops (terminated, its manager killed), the inputs taken and not run yet come
/// out as errors ([`PoolError::Terminated`], [`PoolError::Broken`]) and then the iterator
/// ends. Dropping it early cancels its queued tasks and waits for those running, as
/// [`Imap`](super::Imap) does.
pub struct ImapResults<'a, A: Pod, R: Pod, I: Iterator<Item = A>> {
    pool: &'a Pool,
    feed: Feed,
    items: I,
    /// Argument bytes of inputs `args_base..taken`.
    args: Vec<u8>,
    args_base: usize,
    /// Inputs taken from `items`, submitted (not counting resubmissions), and consumed.
    taken: usize,
    next: usize,
    consumed: usize,
    /// Most inputs taken and not consumed.
    window: usize,
    /// The source is exhausted, or the pool stopped.
    ended: bool,
    _ar: PhantomData<fn(A) -> R>,
}

impl<A: Pod, R: Pod, I: Iterator<Item = A>> std::fmt::Debug for ImapResults<'_, A, R, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapResults").field("taken", &self.taken).field("consumed", &self.consumed).finish()
    }
}

impl Pool {
    /// `f` over `items` lazily, each input with its own result, in input order: the
    /// streaming form of [`map_results`](Self::map_results), for campaigns whose inputs are
    /// generated as they go. One input per task unless
    /// [`ItemOptions::chunksize`] says otherwise.
    ///
    /// ```
    /// use shmkit::pool::Pool;
    /// let pool = Pool::new(2)?;
    /// let crashes = pool
    ///     .imap_results(|x: u64| if x % 50 == 49 { std::process::abort() } else { x }, 0..200u64)?
    ///     .filter(|r| r.as_ref().is_err_and(|e| e.is_crash()))
    ///     .count();
    /// assert_eq!(crashes, 4);
    /// # Ok::<(), shmkit::pool::PoolError>(())
    /// ```
    pub fn imap_results<A: Pod, R: Pod, I: IntoIterator<Item = A>>(
        &self,
        f: fn(A) -> R,
        items: I,
    ) -> Result<ImapResults<'_, A, R, I::IntoIter>, PoolError> {
        self.imap_results_with(f, items, ItemOptions::new())
    }

    /// [`imap_results`](Self::imap_results) with this call's timeout and chunk size.
    pub fn imap_results_with<A: Pod, R: Pod, I: IntoIterator<Item = A>>(
        &self,
        f: fn(A) -> R,
        items: I,
        opts: ItemOptions,
    ) -> Result<ImapResults<'_, A, R, I::IntoIter>, PoolError> {
        if let Some(e) = self.core.lock().refuse() {
            return Err(e);
        }
        let shape = self.core.shape();
        let per = per_entry::<A, R>(opts.chunk_or(1), shape.msg)?;
        let feed = Feed {
            board: Board::new(std::mem::size_of::<R>()),
            tramp: tramp_addr!(Tramp, map_tramp::<A, R>),
            func: f as usize as u64,
            step: std::mem::size_of::<A>(),
            per,
            timeout_ms: opts.timeout_ms(&self.core),
        };
        Ok(ImapResults {
            pool: self,
            feed,
            items: items.into_iter(),
            args: Vec::new(),
            args_base: 0,
            taken: 0,
            next: 0,
            consumed: 0,
            window: (shape.workers * shape.depth * per).max(2),
            ended: false,
            _ar: PhantomData,
        })
    }
}

impl<A: Pod, R: Pod, I: Iterator<Item = A>> ImapResults<'_, A, R, I> {
    /// Take inputs from the source while the window has room.
    fn take_inputs(&mut self) {
        while !self.ended && self.taken - self.consumed < self.window {
            match self.items.next() {
                Some(a) => {
                    self.args.extend_from_slice(bytemuck::bytes_of(&a));
                    self.taken += 1;
                }
                None => self.ended = true,
            }
        }
    }

    /// Forget the arguments of consumed inputs (they never run again).
    fn trim(&mut self) {
        let gone = self.consumed - self.args_base;
        if gone > 0 && gone * 2 >= self.taken - self.args_base {
            self.args.drain(..gone * self.feed.step);
            self.args_base = self.consumed;
        }
    }
}

impl<A: Pod, R: Pod, I: Iterator<Item = A>> Iterator for ImapResults<'_, A, R, I> {
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((i, r)) = self.feed.board.pop_front() {
                self.consumed += 1;
                self.trim();
                return Some(decode_one(i, Some(r)));
            }
            if self.ended && self.consumed == self.taken {
                return None;
            }
            let core = Arc::clone(&self.pool.core);
            let got = core.drive(Deadline::never(), |core, d| {
                self.take_inputs();
                let (step, base, args) = (self.feed.step, self.args_base, &self.args);
                let slice = |first: usize, count: usize| &args[(first - base) * step..(first - base + count) * step];
                self.feed.feed(core, d, &slice, &mut self.next, self.taken)?;
                let front = self.feed.board.pop_front();
                let done = self.ended && self.consumed == self.taken;
                Ok((front.is_some() || done).then_some(front))
            });
            match got {
                Ok(Some((i, r))) => {
                    self.consumed += 1;
                    self.trim();
                    return Some(decode_one(i, Some(r)));
                }
                Ok(None) => return None,
                Err(e) => {
                    // The pool stopped: what was taken and did not run fails; no more inputs.
                    self.ended = true;
                    self.feed.board.fail_rest(self.taken, &e);
                }
            }
        }
    }
}

impl<A: Pod, R: Pod, I: Iterator<Item = A>> Drop for ImapResults<'_, A, R, I> {
    fn drop(&mut self) {
        if self.feed.board.in_flight() > 0 {
            let board = &self.feed.board;
            self.pool.core.settle(&|sink: &Sink| matches!(sink, Sink::Items { board: b, .. } if Arc::ptr_eq(b, board)));
        }
    }
}
