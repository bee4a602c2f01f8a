//! `Process`: run one function in a child process, like Python's `multiprocessing.Process`,
//! with its argument and result crossing through shared memory.

use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytemuck::Pod;

use super::ExitStatus;
use super::child::{self, Child, StartMethod, start_setters};
use super::entry::{self as run, EXIT_RECORD_LEN, ExitRecord};
use super::{ProcessError, panic_message};
use crate::segment::Segment;
use crate::sys::Deadline;

/// Bytes kept for a panic message.
const MESSAGE_CAP: usize = 1024;

/// Result state, right after the exit record.
#[repr(C)]
struct ResultState {
    outcome: AtomicU32,
    message_len: AtomicU32,
}

const RETURNED: u32 = 1;
const PANICKED: u32 = 2;

const STATE_OFF: usize = EXIT_RECORD_LEN;
const ARG_OFF: usize = EXIT_RECORD_LEN + 64;

fn offsets<A, R>() -> (usize, usize, usize) {
    let res = ARG_OFF + std::mem::size_of::<A>();
    let msg = res + std::mem::size_of::<R>();
    (res, msg, msg + MESSAGE_CAP)
}

fn state(seg: &Segment) -> &ResultState {
    // SAFETY: the segment is at least ARG_OFF bytes (see `offsets`), STATE_OFF is 64-aligned,
    // and ResultState is two atomics, valid for any bit pattern and only accessed atomically.
    unsafe { &*seg.as_ptr().add(STATE_OFF).cast::<ResultState>() }
}

/// Options for starting a [`Process`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessBuilder {
    method: StartMethod,
    forced_fork: bool,
}

impl ProcessBuilder {
    /// Default options ([`StartMethod::Auto`]).
    ///
    /// ```
    /// use shmkit::process::{ProcessBuilder, StartMethod};
    /// let b = ProcessBuilder::new().start_method(StartMethod::Auto);
    /// # let _ = b;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    start_setters! {
        /// How to start the child (default [`StartMethod::Auto`]).
        fn start_method;

        /// Fork the child directly from this process even if it has other threads.
        ///
        /// The child is a copy of this process at that instant, including every lock another
        /// thread held (stdout and stderr of a thread that prints, the panic hook, your mutexes):
        /// if it takes one, it waits for ever, and so does [`Process::join`] (use
        /// [`join_timeout`](Process::join_timeout)). [`StartMethod::Auto`] with the fork server
        /// has none of this.
        ///
        /// # Safety
        ///
        /// At the moment of [`spawn`](Self::spawn), no other thread may hold a lock the child's
        /// function will take, and the function must be safe to run in a copy of a
        /// multi-threaded process (POSIX allows only async-signal-safe functions there).
        unsafe fn force_fork;
    }

    /// Start `f(arg)` in a child process.
    pub fn spawn<A: Pod, R: Pod>(self, f: fn(A) -> R, arg: A) -> Result<Process<R>, ProcessError> {
        let method = if self.forced_fork { child::Method::Fork } else { self.method.resolve()? };
        let (_, _, total) = offsets::<A, R>();
        let seg = Segment::anonymous(total)?;
        // SAFETY: the segment is fresh and private to us until the child starts; the argument
        // area lies inside the payload; an unaligned write of a Pod value is always valid.
        unsafe { seg.as_ptr().add(ARG_OFF).cast::<A>().write_unaligned(arg) };
        let child = child::spawn(method, &seg, entry::<A, R>, f as usize as u64, &[], true)?;
        Ok(Process { seg, child, arg_size: std::mem::size_of::<A>(), _r: PhantomData })
    }
}

/// The code a child runs: read the argument, call the function, write the result.
fn entry<A: Pod, R: Pod>(seg: &Segment, func: u64, _fds: &[RawFd]) -> i32 {
    // SAFETY: `func` is `f as usize` for an `f: fn(A) -> R` of this same binary image (the
    // child is a fork of the process that took the address, or of its fork server), and
    // this instance of `entry` was chosen for exactly these `A` and `R`.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(func as usize) };
    let (res_off, msg_off, _) = offsets::<A, R>();
    // SAFETY: the argument area is in bounds and was written before the fork; any bytes are
    // a valid Pod value.
    let arg = unsafe { seg.as_ptr().add(ARG_OFF).cast::<A>().read_unaligned() };
    let st = state(seg);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || f(arg))) {
        Ok(r) => {
            // SAFETY: the result area is in bounds; only this child writes it, and the parent
            // reads it only after seeing RETURNED (Release/Acquire).
            unsafe { seg.as_ptr().add(res_off).cast::<R>().write_unaligned(r) };
            st.outcome.store(RETURNED, Ordering::Release);
            0
        }
        Err(payload) => {
            let msg = panic_message(payload.as_ref());
            let bytes = truncate_utf8(&msg, MESSAGE_CAP);
            // SAFETY: at most MESSAGE_CAP bytes into the message area, in bounds; read by the
            // parent only after PANICKED is published.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), seg.as_ptr().add(msg_off), bytes.len()) };
            st.message_len.store(bytes.len() as u32, Ordering::Relaxed);
            st.outcome.store(PANICKED, Ordering::Release);
            run::EXIT_PANICKED
        }
    }
}

pub(crate) fn truncate_utf8(s: &str, cap: usize) -> &[u8] {
    let mut end = s.len().min(cap);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s.as_bytes()[..end]
}

/// A child process running one function, like Python's `multiprocessing.Process` — but
/// the function's return value comes back through shared memory.
///
/// The function is a plain `fn` (or non-capturing closure); the argument and result are
/// `bytemuck::Pod`. The child dies with its parent (`PR_SET_PDEATHSIG`, tied to the thread
/// that spawned it, as Linux defines it), and dropping a `Process` that still runs kills it,
/// so no child outlives its handle. Its end is watched through a pidfd, never by pid.
///
/// ```
/// use shmkit::process::{Process, ProcessError};
/// use std::time::Duration;
///
/// let mut p = Process::spawn(|x: u64| x * x, 12)?;
/// assert_eq!(p.join_timeout(Duration::from_secs(10))?, 144);
///
/// let mut bad = Process::spawn(|_: ()| -> u8 { panic!("no luck") }, ())?;
/// match bad.join_timeout(Duration::from_secs(10)) {
///     Err(ProcessError::Panicked { message, .. }) => assert!(message.contains("no luck")),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), ProcessError>(())
/// ```
#[derive(Debug)]
#[must_use = "dropping the handle kills the child (SIGKILL) unless it has exited: `join` it"]
pub struct Process<R: Pod> {
    seg: Segment,
    child: Child,
    arg_size: usize,
    _r: PhantomData<fn() -> R>,
}

impl<R: Pod> Process<R> {
    /// Start `f(arg)` in a child process with [`StartMethod::Auto`].
    pub fn spawn<A: Pod>(f: fn(A) -> R, arg: A) -> Result<Process<R>, ProcessError> {
        ProcessBuilder::default().spawn(f, arg)
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Wait for the child to end and return its result.
    pub fn join(&mut self) -> Result<R, ProcessError> {
        self.join_until(Deadline::never())
    }

    /// Like [`join`](Self::join), giving up with [`ProcessError::Timeout`] after `timeout`
    /// (the child keeps running).
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<R, ProcessError> {
        self.join_until(Deadline::after(timeout))
    }

    fn join_until(&mut self, deadline: Deadline) -> Result<R, ProcessError> {
        let start = std::time::Instant::now();
        let record = ExitRecord::of(&self.seg);
        let Some(status) = self.child.wait(record, deadline)? else {
            return Err(ProcessError::Timeout { pid: self.pid(), waited: start.elapsed() });
        };
        self.outcome(status)
    }

    fn outcome(&self, status: ExitStatus) -> Result<R, ProcessError> {
        let pid = self.pid();
        let (res_off, msg_off, _) = offsets::<(), R>();
        let (res_off, msg_off) = (res_off + self.arg_size, msg_off + self.arg_size);
        let st = state(&self.seg);
        match st.outcome.load(Ordering::Acquire) {
            // SAFETY: the child has ended (its exit was reaped), so nobody writes the result
            // area any more; it is in bounds; any bytes are a valid Pod value.
            RETURNED => Ok(unsafe { self.seg.as_ptr().add(res_off).cast::<R>().read_unaligned() }),
            PANICKED => {
                let len = (st.message_len.load(Ordering::Relaxed) as usize).min(MESSAGE_CAP);
                // SAFETY: as above, for at most MESSAGE_CAP bytes of the message area.
                let bytes = unsafe { std::slice::from_raw_parts(self.seg.as_ptr().add(msg_off), len) };
                Err(ProcessError::Panicked { pid, message: String::from_utf8_lossy(bytes).into_owned() })
            }
            _ => Err(match status {
                ExitStatus::Signal(signal) => ProcessError::Killed { pid, signal },
                ExitStatus::Code(code) => ProcessError::Exited { pid, code },
            }),
        }
    }

    /// How the child ended, `None` while it runs (does not block).
    pub fn exit_status(&mut self) -> Result<Option<ExitStatus>, ProcessError> {
        self.child.try_wait(ExitRecord::of(&self.seg))
    }

    /// Whether the child still runs.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.exit_status(), Ok(None))
    }

    /// Ask the child to stop (SIGTERM). Then [`join`](Self::join) it.
    pub fn terminate(&self) -> Result<(), ProcessError> {
        self.child.signal(libc::SIGTERM)
    }

    /// Stop the child at once (SIGKILL). Then [`join`](Self::join) it.
    pub fn kill(&self) -> Result<(), ProcessError> {
        self.child.signal(libc::SIGKILL)
    }
}

impl<R: Pod> Drop for Process<R> {
    fn drop(&mut self) {
        let record = ExitRecord::of(&self.seg);
        if !matches!(self.child.try_wait(record), Ok(Some(_))) {
            self.child.kill_and_reap(record);
        }
    }
}
