//! Try, blocking and timed put/get on a [`RawRing`], shared by every queue flavour.

use std::time::Duration;

use super::error::GetError;
use super::layout::RawRing;
use super::park::{self, Step, Stop};
use super::ring::{GetFail, PutFail};
use crate::sync::WaitPolicy;
use crate::sync::wait::Cadence;
use crate::sync::wait_for::WaitFor;
use crate::sys::Deadline;

/// How long an operation may wait.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// Do not wait (`try_*`).
    No,
    /// Until the deadline (which may be never).
    Until(Deadline),
}

impl WaitFor for Wait {
    fn forever() -> Wait {
        Wait::Until(Deadline::never())
    }

    fn now() -> Wait {
        Wait::No
    }

    fn timeout(t: Duration) -> Wait {
        Wait::Until(Deadline::after(t))
    }
}

/// Why a put failed, before the message is handed back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PutStop {
    Full,
    Closed,
    Timeout,
    Gone,
    TooLarge { len: usize, max: usize },
    Corrupt(&'static str),
}

impl PutStop {
    pub(crate) fn into_error<T>(self, msg: T) -> super::PutError<T> {
        use super::PutError;
        match self {
            PutStop::Full => PutError::Full(msg),
            PutStop::Closed => PutError::Closed(msg),
            PutStop::Timeout => PutError::Timeout(msg),
            PutStop::Gone => PutError::Disconnected(msg),
            PutStop::TooLarge { len, max } => PutError::TooLarge { msg, len, max },
            PutStop::Corrupt(reason) => PutError::Corrupt { msg, reason },
        }
    }
}

impl RawRing {
    /// Put one message: `write(ptr)` fills the slot data at `ptr` (`stride` bytes, ours
    /// exclusively while it runs). `gone` is asked before each park (pipes).
    pub(crate) fn put(
        &self,
        how: (WaitPolicy, Cadence),
        wait: Wait,
        gone: impl FnMut() -> bool,
        mut write: impl FnMut(*mut u8),
    ) -> Result<(), PutStop> {
        let ring = self.ring();
        let mut attempt = || match ring.try_put(|i| write(self.data(i))) {
            Ok(()) => Step::Done(Ok(())),
            Err(PutFail::Full) | Err(PutFail::Busy) => Step::Retry,
            Err(PutFail::Closed) => Step::Done(Err(PutStop::Closed)),
            Err(PutFail::Corrupt(r)) => Step::Done(Err(PutStop::Corrupt(r))),
            Err(PutFail::Died) => Step::Done(Err(PutStop::Corrupt("stopped by a test hook"))),
        };
        match wait {
            Wait::No => match attempt() {
                Step::Done(r) => r,
                Step::Retry => Err(PutStop::Full),
            },
            Wait::Until(deadline) => match park::wait(&ring.hdr.producers.0, how, deadline, gone, attempt) {
                Ok(r) => r,
                Err(Stop::Timeout) => Err(PutStop::Timeout),
                Err(Stop::Gone) => Err(PutStop::Gone),
            },
        }
    }

    /// Get one message: `read(ptr)` reads the slot data at `ptr` (ours while it runs).
    /// `gone` is asked before each park; `Closed` maps to `closed` (pipes: Disconnected).
    pub(crate) fn get<R>(
        &self,
        how: (WaitPolicy, Cadence),
        wait: Wait,
        gone: impl FnMut() -> bool,
        closed: GetError,
        mut read: impl FnMut(*const u8) -> R,
    ) -> Result<R, GetError> {
        let ring = self.ring();
        let pending = std::cell::Cell::new(0u32);
        let mut attempt = || match ring.try_get(|i| read(self.data(i))) {
            Ok(r) => Step::Done(Ok(r)),
            Err(GetFail::Empty) => Step::Retry,
            Err(GetFail::Pending) => {
                pending.set(pending.get() + 1);
                Step::Retry
            }
            Err(GetFail::Closed) => Step::Done(Err(closed.clone())),
            Err(GetFail::Corrupt(r)) => Step::Done(Err(GetError::Corrupt(r))),
            Err(GetFail::Died) => Step::Done(Err(GetError::Corrupt("stopped by a test hook"))),
        };
        match wait {
            Wait::No => {
                // A message being written right now is as good as there: give its producer
                // a moment (crossbeam does the same), without parking.
                for _ in 0..64 {
                    match attempt() {
                        Step::Done(r) => return r,
                        Step::Retry if pending.get() == 0 => return Err(GetError::Empty),
                        Step::Retry => std::hint::spin_loop(),
                    }
                }
                Err(GetError::Empty)
            }
            Wait::Until(deadline) => match park::wait(&ring.hdr.consumers.0, how, deadline, gone, attempt) {
                Ok(r) => r,
                Err(Stop::Timeout) => Err(GetError::Timeout),
                Err(Stop::Gone) => Err(GetError::Disconnected),
            },
        }
    }
}
