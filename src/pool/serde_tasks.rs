//! Tasks over any serde data (feature `serde`): `map_serde`, `imap_serde`,
//! `imap_unordered_serde`, `starmap_serde`, `apply_serde`, `apply_async_serde`. Arguments
//! and results are postcard-encoded (as [`SerdeQueue`](crate::channel::SerdeQueue) does) into
//! the same shared-memory task messages as the `Pod` path, which stays as it is.
//!
//! Each message carries a run of items, postcard-encoded back to back (postcard values
//! delimit themselves), encoded once, straight into the chunk. A chunk holds at most
//! `chunksize` items *and* at most the message size in bytes: it is cut where the next item
//! would not fit, and every item still runs. An item that alone does not
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

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::PoolError;
use super::api::Pool;
use super::dispatch::{Core, Job};
use super::sink::{Callback, Cell};
use super::stream::{Source, Stream, Unpack};
use super::task::{Task, Tramp, tramp_addr, user_fn};
use super::timeout::item_begin;
use crate::sys::Deadline;

/// A postcard flavor that appends to a `Vec` it borrows (on an error, what it appended is
/// the caller's to cut off).
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Append `v`'s postcard encoding to `out` (left as it was on an error).
pub(crate) fn encode_into<T: Serialize + ?Sized>(v: &T, out: &mut Vec<u8>, what: &str) -> Result<(), PoolError> {
    let len = out.len();
    postcard::serialize_with_flavor(v, Append(out)).map_err(|e| {
        out.truncate(len);
        PoolError::TaskFailed { message: format!("cannot encode {what}: {e}") }
    })
}

/// Decode one value from the front of `bytes`, advancing it past the value.
pub(crate) fn decode_next<T: DeserializeOwned>(bytes: &mut &[u8], what: &str) -> Result<T, String> {
    let (v, rest) = postcard::take_from_bytes(bytes).map_err(|e| format!("cannot decode {what}: {e}"))?;
    *bytes = rest;
    Ok(v)
}

/// Run the `count` encoded arguments through `call`, encoding each result.
fn run_items<A: DeserializeOwned, R: Serialize>(t: Task<'_>, mut call: impl FnMut(A) -> R) -> Result<usize, String> {
    let (mut args, mut written) = (t.args, 0);
    for i in 0..t.count as usize {
        item_begin(i as u32, written);
        let r = call(decode_next(&mut args, "a task argument")?);
        match postcard::to_slice(&r, &mut t.out[written..]) {
            Ok(s) => written += s.len(),
            Err(_) => {
                let size = postcard::to_allocvec(&r).map_or(0, |v| v.len());
                return Err(format!(
                    "result {} of its chunk is {size} bytes and the chunk's results overflow the pool's \
                     {}-byte result area: raise PoolBuilder::message_size, or lower chunksize",
                    i + 1,
                    t.out.len()
                ));
            }
        }
    }
    Ok(written)
}

/// # Safety
///
/// `func` is the address of an `fn(A) -> R` of this binary image.
unsafe fn serde_tramp<A: DeserializeOwned, R: Serialize>(func: u64, t: Task<'_>) -> Result<usize, String> {
    // SAFETY: per this function's contract.
    run_items(t, unsafe { user_fn::<fn(A) -> R>(func) })
}

/// # Safety
///
/// `func` is the address of an `fn(A, B) -> R` of this binary image.
unsafe fn serde_star_tramp<A, B, R>(func: u64, t: Task<'_>) -> Result<usize, String>
where
    A: DeserializeOwned,
    B: DeserializeOwned,
    R: Serialize,
{
    // SAFETY: per this function's contract.
    let f: fn(A, B) -> R = unsafe { user_fn(func) };
    run_items(t, |(a, b)| f(a, b))
}

/// Serde inputs — each an `A`, or anything that lends one (`&A`) — encoded as `A` as they
/// are taken.
struct SerdeSource<A, I>(I, PhantomData<fn() -> A>);

impl<A, I> SerdeSource<A, I> {
    fn new(items: I) -> Self {
        SerdeSource(items, PhantomData)
    }
}

impl<A: Serialize, I: Iterator<Item: Borrow<A>>> Source for SerdeSource<A, I> {
    fn next_into(&mut self, buf: &mut Vec<u8>) -> Option<Result<(), PoolError>> {
        Some(encode_into(self.0.next()?.borrow(), buf, "an argument"))
    }
}

impl<S: Source + ?Sized> Source for Box<S> {
    fn next_into(&mut self, buf: &mut Vec<u8>) -> Option<Result<(), PoolError>> {
        (**self).next_into(buf)
    }
}

/// Serde results, back to back.
fn serde_unpack<R: DeserializeOwned>(mut bytes: &[u8], count: usize, ready: &mut VecDeque<Result<R, PoolError>>) {
    for _ in 0..count {
        let r = decode_next(&mut bytes, "a result").map_err(|message| PoolError::TaskFailed { message });
        ready.push_back(r);
    }
}

/// Results of [`Pool::imap_serde`] (input order) or [`Pool::imap_unordered_serde`] (as they
/// finish): as [`Imap`](super::Imap), for serde items. Dropping it early cancels the chunks
/// in flight and waits until none can still run.
#[must_use = "iterators are lazy: no task runs until it is consumed, and dropping it cancels the chunks in flight"]
pub struct SerdeImap<'p, R> {
    inner: Stream<Box<dyn Source + 'p>, R>,
}

impl<R> std::fmt::Debug for SerdeImap<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<R: DeserializeOwned> Iterator for SerdeImap<'_, R> {
    type Item = Result<R, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next_result()
    }
}

/// The pending result of [`Pool::apply_async_serde`] and
/// [`Pool::apply_async_serde_with`]: as [`AsyncResult`](super::AsyncResult), for serde
/// results. Dropping it leaves the task running (its callbacks, if any, still run), as
/// Python's fire-and-forget `apply_async(f, args, callback=...)`.
pub struct SerdeAsyncResult<R> {
    core: Arc<Core>,
    cell: Arc<Cell>,
    _r: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for SerdeAsyncResult<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerdeAsyncResult").field("done", &self.cell.is_done()).finish()
    }
}

impl<R: DeserializeOwned> SerdeAsyncResult<R> {
    /// Whether the task has ended. Never blocks (it collects finished results).
    pub fn ready(&self) -> bool {
        if !self.cell.is_done() {
            let _ = self.core.drive(Deadline::after(Duration::ZERO), |_, _| Ok(Some(())));
        }
        self.cell.is_done()
    }

    /// Wait for the result.
    pub fn get(self) -> Result<R, PoolError> {
        self.wait_take(Deadline::never())
    }

    /// Wait at most `timeout`: [`PoolError::Timeout`] if the task still runs (then ask
    /// again); the result once it is there (asking again after that is an error).
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<R, PoolError> {
        self.wait_take(Deadline::after(timeout))
    }

    fn wait_take(&self, deadline: Deadline) -> Result<R, PoolError> {
        let cell = &self.cell;
        self.core.drive(deadline, |_, _| Ok(cell.is_done().then_some(())))?;
        match cell.take() {
            Some(Ok(bytes)) => {
                decode_next(&mut bytes.as_slice(), "a result").map_err(|message| PoolError::TaskFailed { message })
            }
            Some(Err(e)) => Err(e),
            None => Err(PoolError::TaskFailed { message: "the result was taken already".into() }),
        }
    }
}

impl Pool {
    fn serde_imap<'p, R: DeserializeOwned>(
        &self,
        code: (u64, u64),
        source: Box<dyn Source + 'p>,
        chunksize: usize,
        ordered: bool,
    ) -> SerdeImap<'p, R> {
        let unpack: Unpack<R> = serde_unpack::<R>;
        SerdeImap { inner: Stream::new(Arc::clone(&self.core), code, (source, unpack), chunksize, ordered) }
    }

    /// `f` over every item of any serde type, results in order (Python's `map` of picklable
    /// data). Chunks as [`map`](Self::map) does, cut where a message is full.
    ///
    /// The items may be `A`s or borrowed `&A`s: as with Python's `map`, a caller that keeps
    /// its inputs passes `&inputs` and nothing is cloned or dropped on the way. `A` is then
    /// known from `f` alone, so a closure names its parameter's type (`|s: String| s.len()`)
    /// where a named function already does.
    ///
    /// ```
    /// # let pool = shmkit::pool::Pool::new(2)?;
    /// fn len(s: String) -> usize { s.len() }
    /// let words = vec!["shared".to_string(), "memory".to_string()];
    /// assert_eq!(pool.map_serde(len, &words)?, [6, 6]);
    /// assert_eq!(words.len(), 2, "still ours");
    /// # Ok::<(), shmkit::pool::PoolError>(())
    /// ```
    pub fn map_serde<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<Vec<R>, PoolError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item: Borrow<A>>,
    {
        let items: Vec<I::Item> = items.into_iter().collect();
        let per = items.len().div_ceil(self.processes() * 4).max(1);
        self.imap_serde(f, items, per).collect()
    }

    /// `f` over `items` (`A`s or `&A`s), lazily, results in input order; `chunksize` items
    /// per message at most (fewer when the message is full).
    pub fn imap_serde<'p, A, R, I>(&'p self, f: fn(A) -> R, items: I, chunksize: usize) -> SerdeImap<'p, R>
    where
        A: Serialize + DeserializeOwned + 'p,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item: Borrow<A>, IntoIter: 'p>,
    {
        self.serde_imap(serde_fn(f), Box::new(SerdeSource::<A, _>::new(items.into_iter())), chunksize, true)
    }

    /// `f` over `items` (`A`s or `&A`s), lazily, results as they finish.
    pub fn imap_unordered_serde<'p, A, R, I>(&'p self, f: fn(A) -> R, items: I, chunksize: usize) -> SerdeImap<'p, R>
    where
        A: Serialize + DeserializeOwned + 'p,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item: Borrow<A>, IntoIter: 'p>,
    {
        self.serde_imap(serde_fn(f), Box::new(SerdeSource::<A, _>::new(items.into_iter())), chunksize, false)
    }

    /// `f(a, b)` over every pair of serde values (`(A, B)`s or `&(A, B)`s), results in order.
    pub fn starmap_serde<A, B, R, I>(&self, f: fn(A, B) -> R, items: I) -> Result<Vec<R>, PoolError>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item: Borrow<(A, B)>>,
    {
        let items: Vec<I::Item> = items.into_iter().collect();
        let per = items.len().div_ceil(self.processes() * 4).max(1);
        let tramp = tramp_addr!(Tramp, serde_star_tramp::<A, B, R>);
        let source = Box::new(SerdeSource::<(A, B), _>::new(items.into_iter()));
        self.serde_imap((tramp, f as usize as u64), source, per, true).collect()
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
        self.submit_serde(f, arg, None)
    }

    /// Like [`apply_async_serde`](Self::apply_async_serde), with callbacks run in this
    /// process (on a helper thread, or on a thread waiting on the pool) when the task ends,
    /// as Python's `apply_async(callback=, error_callback=)`: `on_ok` with the result, or
    /// `on_err` with the error. They run before the handle becomes ready; the handle still
    /// gives the result.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// let pool = shmkit::pool::Pool::new(1)?;
    /// let (tx, rx) = mpsc::channel();
    /// let tx2 = tx.clone();
    /// fn shout(s: String) -> String { s.to_uppercase() }
    /// let handle = pool.apply_async_serde_with(
    ///     shout,
    ///     "hello".to_string(),
    ///     move |r| tx.send(Ok(r)).unwrap(),
    ///     move |e| tx2.send(Err(e.to_string())).unwrap(),
    /// )?;
    /// assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap(), Ok("HELLO".to_string()));
    /// assert_eq!(handle.get()?, "HELLO");
    /// # Ok::<(), shmkit::pool::PoolError>(())
    /// ```
    pub fn apply_async_serde_with<A: Serialize + DeserializeOwned, R: Serialize + DeserializeOwned>(
        &self,
        f: fn(A) -> R,
        arg: A,
        on_ok: impl FnOnce(R) + Send + 'static,
        on_err: impl FnOnce(&PoolError) + Send + 'static,
    ) -> Result<SerdeAsyncResult<R>, PoolError> {
        let cb: Callback = Box::new(move |r: Result<&[u8], &PoolError>| {
            let mut bytes = match r {
                Ok(bytes) => bytes,
                Err(e) => return on_err(e),
            };
            match decode_next(&mut bytes, "a result") {
                Ok(v) => on_ok(v),
                Err(message) => on_err(&PoolError::TaskFailed { message }),
            }
        });
        let handle = self.submit_serde(f, arg, Some(cb))?;
        self.core.callback_added();
        Ok(handle)
    }

    fn submit_serde<A: Serialize + DeserializeOwned, R: Serialize + DeserializeOwned>(
        &self,
        f: fn(A) -> R,
        arg: A,
        cb: Option<Callback>,
    ) -> Result<SerdeAsyncResult<R>, PoolError> {
        let (mut bytes, msg) = (Vec::new(), self.core.shape().msg);
        encode_into(&arg, &mut bytes, "an argument")?;
        if bytes.len() > msg {
            return Err(PoolError::MessageTooLarge { what: "an argument", size: bytes.len(), limit: msg });
        }
        let (tramp, func) = serde_fn(f);
        let cell = Arc::new(Cell::with_callback(cb));
        let parts = [bytes.as_slice()];
        self.core.submit_cell(&Job { tramp, func, count: 1, args: &parts }, &cell)?;
        Ok(SerdeAsyncResult { core: Arc::clone(&self.core), cell, _r: PhantomData })
    }
}

/// The trampoline and function addresses of a serde task `f`.
fn serde_fn<A: DeserializeOwned, R: Serialize>(f: fn(A) -> R) -> (u64, u64) {
    (tramp_addr!(Tramp, serde_tramp::<A, R>), f as usize as u64)
}
