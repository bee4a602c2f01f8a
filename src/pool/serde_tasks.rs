//! Tasks over any serde data (feature `serde`): `map_serde`, `imap_serde`,
//! `imap_unordered_serde`, `starmap_serde`, `apply_serde`, `apply_async_serde`. Arguments
//! and results are postcard-encoded (as [`SerdeQueue`](crate::channel::SerdeQueue) does) into
//! the same shared-memory task messages as the `Pod` path, which stays as it is.
//!
//! Each message carries a run of items, each framed as a 4-byte length and its bytes. A
//! chunk holds at most `chunksize` items *and* at most the message size in bytes: it is cut
//! where the next item would not fit, and every item still runs. An item that alone does not
//! fit is [`PoolError::MessageTooLarge`] naming the limit (raise
//! [`PoolBuilder::message_size`](super::PoolBuilder::message_size)); so is a chunk whose
//! results do not fit the result area (a task error saying so, never a truncation).
//!
//! ```
//! use shmkit::pool::Pool;
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Job { name: String, xs: Vec<f64> }
//! fn total(j: Job) -> (String, f64) { (j.name, j.xs.iter().sum()) }
//!
//! let pool = Pool::new(2)?;
//! let jobs = (0..10).map(|i| Job { name: format!("job{i}"), xs: vec![i as f64; 8] });
//! let out = pool.map_serde(total, jobs)?;
//! assert_eq!(out[3], ("job3".to_string(), 24.0));
//! # Ok::<(), shmkit::pool::PoolError>(())
//! ```

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::PoolError;
use super::api::Pool;
use super::dispatch::{Core, Dispatch, Job};
use super::sink::{Cell, Sink};
use super::task::{Tramp, tramp_addr};
use super::timeout::item_begin;
use crate::sys::Deadline;

/// Bytes of an item's length prefix.
const LEN: usize = 4;

/// `v` framed (length, postcard bytes), or `MessageTooLarge` when it cannot fit `msg`.
fn frame<T: Serialize>(v: &T, msg: usize, what: &'static str) -> Result<Vec<u8>, PoolError> {
    let mut out = vec![0u8; LEN];
    out = postcard::to_extend(v, out)
        .map_err(|e| PoolError::TaskFailed { message: format!("cannot encode {what}: {e}") })?;
    let n = out.len() - LEN;
    if out.len() > msg || u32::try_from(n).is_err() {
        return Err(PoolError::MessageTooLarge { what, size: out.len(), limit: msg });
    }
    out[..LEN].copy_from_slice(&(n as u32).to_ne_bytes());
    Ok(out)
}

/// The next framed item of `bytes` from `at`, advancing it.
fn unframe<'a>(bytes: &'a [u8], at: &mut usize) -> Result<&'a [u8], String> {
    let bad = || "the task message is inconsistent (item framing)".to_owned();
    let head = bytes.get(*at..*at + LEN).ok_or_else(bad)?;
    let n = u32::from_ne_bytes(head.try_into().map_err(|_| bad())?) as usize;
    let item = bytes.get(*at + LEN..*at + LEN + n).ok_or_else(bad)?;
    *at += LEN + n;
    Ok(item)
}

/// Run `count` framed items of `args` through `call`, framing each result into `out`.
fn run_items<R: Serialize>(
    args: &[u8],
    count: u32,
    out: &mut [u8],
    mut call: impl FnMut(&[u8]) -> Result<R, String>,
) -> Result<usize, String> {
    let (mut at, mut written) = (0, 0);
    for i in 0..count as usize {
        item_begin(i as u32, written);
        let r = call(unframe(args, &mut at)?)?;
        let room = out.len().saturating_sub(written + LEN);
        let n = match postcard::to_slice(&r, &mut out[written + LEN..written + LEN + room]) {
            Ok(s) => s.len(),
            Err(_) => {
                let size = postcard::to_allocvec(&r).map_or(0, |v| v.len()) + LEN;
                return Err(format!(
                    "result {} of its chunk is {size} bytes and the chunk's results overflow the pool's \
                     {}-byte result area: raise PoolBuilder::message_size, or lower chunksize",
                    i + 1,
                    out.len()
                ));
            }
        };
        out[written..written + LEN].copy_from_slice(&(n as u32).to_ne_bytes());
        written += LEN + n;
    }
    Ok(written)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("cannot decode a task argument: {e}"))
}

/// # Safety
///
/// `func` is the address of an `fn(A) -> R` of this binary image.
unsafe fn serde_tramp<A: DeserializeOwned, R: Serialize>(
    func: u64,
    args: &[u8],
    count: u32,
    out: &mut [u8],
) -> Result<usize, String> {
    // SAFETY: per this function's contract.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(func as usize) };
    run_items(args, count, out, |b| Ok(f(decode(b)?)))
}

/// # Safety
///
/// `func` is the address of an `fn(A, B) -> R` of this binary image.
unsafe fn serde_star_tramp<A: DeserializeOwned, B: DeserializeOwned, R: Serialize>(
    func: u64,
    args: &[u8],
    count: u32,
    out: &mut [u8],
) -> Result<usize, String> {
    // SAFETY: per this function's contract.
    let f = unsafe { std::mem::transmute::<usize, fn(A, B) -> R>(func as usize) };
    run_items(args, count, out, |b| {
        let (a, b2) = decode(b)?;
        Ok(f(a, b2))
    })
}

/// Results of [`Pool::imap_serde`] (input order) or [`Pool::imap_unordered_serde`] (as they
/// finish): as [`Imap`](super::Imap), for serde items. Dropping it early cancels the chunks
/// in flight and waits until none can still run.
#[must_use = "iterators are lazy: no task runs until it is consumed, and dropping it cancels the chunks in flight"]
pub struct SerdeImap<'p, R> {
    core: Arc<Core>,
    tramp: u64,
    func: u64,
    items: Box<dyn Iterator<Item = Result<Vec<u8>, PoolError>> + 'p>,
    per: usize,
    window: usize,
    ordered: bool,
    pending: VecDeque<(Arc<Cell>, usize)>,
    /// An encoded item taken from `items` that did not fit the last chunk.
    carry: Option<Vec<u8>>,
    ready: VecDeque<Result<R, PoolError>>,
    _r: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for SerdeImap<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerdeImap").field("ordered", &self.ordered).field("in_flight", &self.pending.len()).finish()
    }
}

impl<R: DeserializeOwned> SerdeImap<'_, R> {
    /// Submit chunks while the window and the rings have room.
    fn feed(&mut self, core: &Core, d: &mut Dispatch) -> Result<(), PoolError> {
        let msg = core.shape().msg;
        while self.pending.len() < self.window {
            let (mut bytes, mut count) = (Vec::new(), 0);
            while count < self.per {
                let item = match self.carry.take() {
                    Some(item) => item,
                    None => match self.items.next() {
                        Some(item) => item?,
                        None => break,
                    },
                };
                if bytes.len() + item.len() > msg {
                    self.carry = Some(item);
                    break;
                }
                bytes.extend_from_slice(&item);
                count += 1;
            }
            if count == 0 {
                return Ok(());
            }
            let parts = [bytes.as_slice()];
            let job = Job { tramp: self.tramp, func: self.func, count: count as u32, args: &parts };
            let cell = Arc::new(Cell::default());
            if !core.try_submit(d, &job, Sink::Cell(Arc::clone(&cell)))? {
                // No room: put the chunk back, item by item, for the next round.
                self.requeue(bytes);
                return Ok(());
            }
            self.pending.push_back((cell, count));
        }
        Ok(())
    }

    /// Undo a chunk that could not be submitted (rare: the rings were full).
    fn requeue(&mut self, bytes: Vec<u8>) {
        let mut items = Vec::new();
        let mut at = 0;
        while let Ok(item) = unframe(&bytes, &mut at) {
            let mut framed = (item.len() as u32).to_ne_bytes().to_vec();
            framed.extend_from_slice(item);
            items.push(Ok(framed));
        }
        items.extend(self.carry.take().map(Ok));
        let rest = std::mem::replace(&mut self.items, Box::new(std::iter::empty()));
        self.items = Box::new(items.into_iter().chain(rest));
    }

    fn unpack(&mut self, r: Option<Result<Vec<u8>, PoolError>>, count: usize) {
        match r {
            Some(Ok(bytes)) => {
                let mut at = 0;
                for _ in 0..count {
                    let item = unframe(&bytes, &mut at)
                        .and_then(|b| postcard::from_bytes(b).map_err(|e| format!("cannot decode a result: {e}")));
                    self.ready.push_back(item.map_err(|message| PoolError::TaskFailed { message }));
                }
            }
            Some(Err(e)) => self.ready.push_back(Err(e)),
            None => {}
        }
    }
}

impl<R: DeserializeOwned> Iterator for SerdeImap<'_, R> {
    type Item = Result<R, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
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
                let r = cell.take();
                self.unpack(r, count);
                self.ready.pop_front()
            }
        }
    }
}

impl<R> Drop for SerdeImap<'_, R> {
    fn drop(&mut self) {
        if self.pending.iter().any(|(cell, _)| !cell.is_done()) {
            let pending = &self.pending;
            self.core.settle(&|sink: &Sink| pending.iter().any(|(cell, _)| sink.is_cell(cell)));
        }
    }
}

/// The pending result of [`Pool::apply_async_serde`].
#[derive(Debug)]
pub struct SerdeAsyncResult<R> {
    inner: SerdeImap<'static, R>,
}

impl<R: DeserializeOwned> SerdeAsyncResult<R> {
    /// Whether the task has ended. Never blocks (it collects finished results).
    pub fn ready(&self) -> bool {
        let done = |s: &Self| s.inner.pending.front().is_none_or(|(cell, _)| cell.is_done());
        if !done(self) {
            let _ = self.inner.core.drive(Deadline::after(Duration::ZERO), |_, _| Ok(Some(())));
        }
        done(self)
    }

    /// Wait for the result.
    pub fn get(mut self) -> Result<R, PoolError> {
        self.take()
    }

    /// Wait at most `timeout`: [`PoolError::Timeout`] if the task still runs (then ask
    /// again); the result once it is there (asking again after that is an error).
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<R, PoolError> {
        if let Some((cell, _)) = self.inner.pending.front() {
            let cell = Arc::clone(cell);
            self.inner.core.drive(Deadline::after(timeout), |_, _| Ok(cell.is_done().then_some(())))?;
        }
        self.take()
    }

    fn take(&mut self) -> Result<R, PoolError> {
        self.inner
            .next()
            .unwrap_or_else(|| Err(PoolError::TaskFailed { message: "the result was taken already".into() }))
    }
}

impl Pool {
    fn serde_imap<'p, A: Serialize + 'p, R>(
        &self,
        tramp: u64,
        func: u64,
        items: impl IntoIterator<Item = A, IntoIter: 'p>,
        chunksize: usize,
        ordered: bool,
    ) -> SerdeImap<'p, R> {
        let shape = self.core.shape();
        let msg = shape.msg;
        SerdeImap {
            core: Arc::clone(&self.core),
            tramp,
            func,
            items: Box::new(items.into_iter().map(move |a| frame(&a, msg, "an argument"))),
            per: chunksize.clamp(1, u32::MAX as usize),
            window: (shape.workers * shape.depth).max(2),
            ordered,
            pending: VecDeque::new(),
            carry: None,
            ready: VecDeque::new(),
            _r: PhantomData,
        }
    }

    /// `f` over every item of any serde type, results in order (Python's `map` of picklable
    /// data). Chunks as [`map`](Self::map) does, cut where a message is full.
    pub fn map_serde<A: Serialize + DeserializeOwned, R: Serialize + DeserializeOwned>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>, PoolError> {
        let items: Vec<A> = items.into_iter().collect();
        let per = items.len().div_ceil(self.processes() * 4).max(1);
        self.imap_serde(f, items, per).collect()
    }

    /// `f` over `items`, lazily, results in input order; `chunksize` items per message at
    /// most (fewer when the message is full).
    pub fn imap_serde<'p, A: Serialize + DeserializeOwned + 'p, R: Serialize + DeserializeOwned>(
        &'p self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A, IntoIter: 'p>,
        chunksize: usize,
    ) -> SerdeImap<'p, R> {
        self.serde_imap(tramp_addr!(Tramp, serde_tramp::<A, R>), f as usize as u64, items, chunksize, true)
    }

    /// `f` over `items`, lazily, results as they finish.
    pub fn imap_unordered_serde<'p, A: Serialize + DeserializeOwned + 'p, R: Serialize + DeserializeOwned>(
        &'p self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A, IntoIter: 'p>,
        chunksize: usize,
    ) -> SerdeImap<'p, R> {
        self.serde_imap(tramp_addr!(Tramp, serde_tramp::<A, R>), f as usize as u64, items, chunksize, false)
    }

    /// `f(a, b)` over every pair of serde values, results in order.
    pub fn starmap_serde<A, B, R>(
        &self,
        f: fn(A, B) -> R,
        items: impl IntoIterator<Item = (A, B)>,
    ) -> Result<Vec<R>, PoolError>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let items: Vec<(A, B)> = items.into_iter().collect();
        let per = items.len().div_ceil(self.processes() * 4).max(1);
        let tramp = tramp_addr!(Tramp, serde_star_tramp::<A, B, R>);
        self.serde_imap(tramp, f as usize as u64, items, per, true).collect()
    }

    /// Run `f(arg)` in a worker and wait for the result.
    pub fn apply_serde<A: Serialize + DeserializeOwned, R: Serialize + DeserializeOwned>(
        &self,
        f: fn(A) -> R,
        arg: A,
    ) -> Result<R, PoolError> {
        self.imap_serde(f, [arg], 1)
            .next()
            .unwrap_or_else(|| Err(PoolError::TaskFailed { message: "no result".into() }))
    }
}

impl Pool {
    /// Start `f(arg)` in a worker; the handle gives the result. An argument too large for a
    /// task message is refused here, before anything runs.
    pub fn apply_async_serde<A: Serialize + DeserializeOwned, R: Serialize + DeserializeOwned>(
        &self,
        f: fn(A) -> R,
        arg: A,
    ) -> Result<SerdeAsyncResult<R>, PoolError> {
        let framed = frame(&arg, self.core.shape().msg, "an argument")?;
        let tramp = tramp_addr!(Tramp, serde_tramp::<A, R>);
        let mut inner: SerdeImap<'static, R> = self.serde_imap::<(), R>(tramp, f as usize as u64, [], 1, true);
        inner.items = Box::new(std::iter::once(Ok(framed)));
        let core = Arc::clone(&self.core);
        core.drive(Deadline::never(), |c, d| {
            inner.feed(c, d)?;
            Ok((!inner.pending.is_empty()).then_some(()))
        })?;
        Ok(SerdeAsyncResult { inner })
    }
}
