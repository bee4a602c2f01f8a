//! `AsyncResult`: the handle of one `apply_async` task.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytemuck::Pod;

use super::PoolError;
use super::dispatch::Core;
use super::sink::Cell;
use crate::sys::Deadline;

/// The pending result of [`Pool::apply_async`](super::Pool::apply_async).
pub struct AsyncResult<R: Pod> {
    core: Arc<Core>,
    cell: Arc<Cell>,
    spent: Mutex<Option<Result<R, String>>>,
    _r: PhantomData<fn() -> R>,
}

impl<R: Pod> std::fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult").field("ready", &self.ready()).finish()
    }
}

impl<R: Pod> AsyncResult<R> {
    pub(crate) fn new(core: Arc<Core>, cell: Arc<Cell>) -> Self {
        AsyncResult { core, cell, spent: Mutex::new(None), _r: PhantomData }
    }

    /// Whether the task has ended (successfully or not). Never blocks: it collects whatever
    /// results the workers have finished, so polling `ready()` alone makes progress.
    pub fn ready(&self) -> bool {
        if self.cell.is_done() || self.spent.lock().unwrap_or_else(PoisonError::into_inner).is_some() {
            return true;
        }
        // One harvest pass, no waiting: the step yields at once.
        let _ = self.core.drive(Deadline::after(Duration::ZERO), |_, _| Ok(Some(())));
        self.cell.is_done()
    }

    /// Wait for the result.
    pub fn get(self) -> Result<R, PoolError> {
        self.wait_take(Deadline::never())
    }

    /// Wait at most `timeout`: [`PoolError::Timeout`] if the task still runs (then ask again).
    pub fn get_timeout(&self, timeout: Duration) -> Result<R, PoolError> {
        self.wait_take(Deadline::after(timeout))
    }

    fn wait_take(&self, deadline: Deadline) -> Result<R, PoolError> {
        let spent_error = |s: &Result<R, String>| s.clone().map_err(|message| PoolError::TaskFailed { message });
        if let Some(s) = self.spent.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            return spent_error(s);
        }
        // Wait without holding `spent`: another thread's longer wait must not hold back ours.
        let cell = &self.cell;
        self.core.drive(deadline, |_, _| Ok(cell.is_done().then_some(())))?;
        let mut spent = self.spent.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = spent.as_ref() {
            return spent_error(s);
        }
        let r = match cell.take() {
            Some(Ok(bytes)) if bytes.len() == std::mem::size_of::<R>() => Ok(bytemuck::pod_read_unaligned(&bytes)),
            Some(Ok(_)) => {
                Err(PoolError::TaskFailed { message: "a worker returned a result of the wrong size".into() })
            }
            Some(Err(e)) => Err(e),
            None => Err(PoolError::TaskFailed { message: "the result was taken already".into() }),
        };
        *spent = Some(r.as_ref().map(|v| *v).map_err(ToString::to_string));
        r
    }
}
