//! The engine behind the lazy iterators ([`Imap`](super::Imap) over `Pod` items,
//! [`SerdeImap`](super::SerdeImap) over serde items): it encodes inputs into chunks, keeps a
//! bounded window of chunks in flight, and decodes their results in input order or as they
//! finish. What differs between the two is only how an input is encoded ([`Source`]) and
//! how a chunk's results are decoded ([`Unpack`]).
//!
//! Inputs are encoded straight into one reusable buffer; a chunk ends at `per` inputs or where
//! the next input would overflow the task message (that input starts the next chunk, encoded
//! once). An input that alone does not fit a message, or cannot be encoded, comes out as an
//! error in its own place in the results.

use std::collections::VecDeque;
use std::sync::Arc;

use super::PoolError;
use super::dispatch::{Core, Dispatch, Job};
use super::sink::{Cell, Sink};
use crate::sys::Deadline;

/// Where a stream's inputs come from, encoded.
pub(crate) trait Source {
    /// Append the next input's encoding to `buf`; `None` once there are no more inputs. An
    /// input that cannot be encoded is `Some(Err)`.
    fn next_into(&mut self, buf: &mut Vec<u8>) -> Option<Result<(), PoolError>>;
}

/// How a chunk's result bytes become results: decode the `count` results of one chunk from
/// `bytes` into `ready`.
pub(crate) type Unpack<R> = fn(bytes: &[u8], count: usize, ready: &mut VecDeque<Result<R, PoolError>>);

/// A lazy stream of tasks and their results.
pub(crate) struct Stream<S, R> {
    core: Arc<Core>,
    tramp: u64,
    func: u64,
    source: S,
    unpack: Unpack<R>,
    /// Most inputs per chunk.
    per: usize,
    /// Most chunks in flight.
    window: usize,
    ordered: bool,
    /// Chunks in flight (or failed in place), with their input counts, in input order.
    pending: VecDeque<(Arc<Cell>, usize)>,
    /// Encoded inputs not submitted yet: the next chunk's `count` inputs in `buf[..end]`,
    /// then at most one input that did not fit it.
    buf: Vec<u8>,
    count: usize,
    end: usize,
    /// An input that could not be encoded: reported after the chunk being assembled.
    failed: Option<PoolError>,
    exhausted: bool,
    ready: VecDeque<Result<R, PoolError>>,
}

impl<S, R> std::fmt::Debug for Stream<S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap").field("ordered", &self.ordered).field("in_flight", &self.pending.len()).finish()
    }
}

impl<S: Source, R> Stream<S, R> {
    /// A stream of `func` through `tramp` over `source` (at most `per` inputs per chunk),
    /// results decoded by `unpack`.
    pub fn new(
        core: Arc<Core>,
        (tramp, func): (u64, u64),
        (source, unpack): (S, Unpack<R>),
        per: usize,
        ordered: bool,
    ) -> Self {
        let shape = core.shape();
        Stream {
            core,
            tramp,
            func,
            source,
            unpack,
            per: per.clamp(1, u32::MAX as usize),
            window: (shape.workers * shape.depth).max(2),
            ordered,
            pending: VecDeque::new(),
            buf: Vec::with_capacity(shape.msg * 2),
            count: 0,
            end: 0,
            failed: None,
            exhausted: false,
            ready: VecDeque::new(),
        }
    }

    /// Encode inputs into the next chunk until it is full, the source ends, or an input fails.
    fn fill(&mut self, msg: usize) {
        if self.count == 0 && !self.buf.is_empty() {
            // The input that did not fit the last chunk starts this one.
            (self.count, self.end) = (1, self.buf.len());
        }
        while self.count < self.per && self.end == self.buf.len() && self.failed.is_none() && !self.exhausted {
            match self.source.next_into(&mut self.buf) {
                None => self.exhausted = true,
                Some(Err(e)) => {
                    self.buf.truncate(self.end);
                    self.failed = Some(e);
                }
                Some(Ok(())) if self.buf.len() - self.end > msg => {
                    let size = self.buf.len() - self.end;
                    self.buf.truncate(self.end);
                    self.failed = Some(PoolError::MessageTooLarge { what: "an argument", size, limit: msg });
                }
                Some(Ok(())) if self.buf.len() <= msg => (self.count, self.end) = (self.count + 1, self.buf.len()),
                Some(Ok(())) => {} // it starts the next chunk
            }
        }
    }

    /// Submit chunks while the window and the rings have room.
    fn feed(&mut self, core: &Core, d: &mut Dispatch) -> Result<(), PoolError> {
        let msg = core.shape().msg;
        while self.pending.len() < self.window {
            self.fill(msg);
            if self.count == 0 {
                match self.failed.take() {
                    Some(e) => self.pending.push_back((Arc::new(Cell::failed(e)), 1)),
                    None => return Ok(()),
                }
                continue;
            }
            let parts = [&self.buf[..self.end]];
            let job = Job { tramp: self.tramp, func: self.func, count: self.count as u32, args: &parts };
            let cell = Arc::new(Cell::default());
            if !core.try_submit(d, &job, Sink::Cell(Arc::clone(&cell)))? {
                return Ok(()); // the chunk stays assembled for the next round
            }
            self.pending.push_back((cell, self.count));
            self.buf.drain(..self.end);
            (self.count, self.end) = (0, 0);
        }
        Ok(())
    }

    /// The next result, waiting for it; `None` once every input has its result.
    pub fn next_result(&mut self) -> Option<Result<R, PoolError>> {
        if let Some(r) = self.ready.pop_front() {
            return Some(r);
        }
        let core = Arc::clone(&self.core);
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
                match cell.take() {
                    Some(Ok(bytes)) => (self.unpack)(&bytes, count, &mut self.ready),
                    Some(Err(e)) => self.ready.push_back(Err(e)),
                    None => {}
                }
                self.ready.pop_front()
            }
        }
    }
}

impl<S, R> Drop for Stream<S, R> {
    /// Cancel the chunks in flight and wait until none can still run.
    fn drop(&mut self) {
        if self.pending.iter().any(|(cell, _)| !cell.is_done()) {
            let pending = &self.pending;
            self.core.settle(&|sink: &Sink| pending.iter().any(|(cell, _)| sink.is_cell(cell)));
        }
    }
}
