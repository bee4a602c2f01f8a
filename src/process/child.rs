//! A child process we started, watched through its pidfd: how it is forked (directly or by
//! the fork server) and how its end is learned.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::entry::{Entry, ExitRecord, run_entry};
use super::{ExitStatus, ProcessError, fork_server};
use crate::segment::Segment;
use crate::sys::Deadline;
use crate::sys::process as os;

/// How a process is started.
///
/// | method | how | use it when |
/// |---|---|---|
/// | [`Fork`](Self::Fork) | `fork()` from the calling thread, only while this process has a single thread (else [`ProcessError::ThreadsExist`]) | the process is single-threaded (a plain `main` before it starts threads, a benchmark harness); fastest, and the child sees the parent's current memory |
/// | [`ForkServer`](Self::ForkServer) | a single-threaded helper, forked before any thread existed, forks the child | the process has threads (test harnesses, async runtimes, GUIs): the child starts from the helper's early snapshot, so it cannot inherit a lock another thread held |
/// | [`Auto`](Self::Auto) (default) | `Fork` if this process has one thread, else `ForkServer` if it runs, else an error saying how to start it | almost always |
///
/// Both methods run plain `fn` items (the binary image is the same in every fork);
/// arguments and results cross through shared memory. Start the fork server with
/// [`fork_server::start`] at the top of `main`, or with [`fork_server_at_load!`](crate::fork_server_at_load)
/// (before `main`, for binaries whose `main` you do not write, such as test harnesses).
///
/// A fork from a process with several threads can deadlock the child (it inherits every
/// lock another thread held at that instant, stdout included), so no safe call does it. The
/// explicit, `unsafe` opt-in is [`ProcessBuilder::force_fork`](super::ProcessBuilder::force_fork)
/// or [`PoolBuilder::force_fork`](crate::pool::PoolBuilder::force_fork).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartMethod {
    /// `Fork` when single-threaded, else `ForkServer` when running, else an error.
    #[default]
    Auto,
    /// `fork()` from the calling thread, when this process has a single thread; with other
    /// threads it is refused with [`ProcessError::ThreadsExist`] (the child could deadlock on
    /// a lock one of them held: stdout, the environment, your own mutexes). To fork anyway,
    /// see the `unsafe` `force_fork` of [`ProcessBuilder`](super::ProcessBuilder::force_fork)
    /// and [`PoolBuilder`](crate::pool::PoolBuilder::force_fork).
    Fork,
    /// Ask the fork server (an error if it is not running).
    ForkServer,
}

/// The `start_method` and `force_fork` setters of a builder with fields `method:
/// StartMethod` and `forced_fork: bool`, each with the builder's own docs:
///
/// ```text
/// start_setters! {
///     /// How to start ...
///     fn start_method;
///     /// Fork ... # Safety ...
///     unsafe fn force_fork;
/// }
/// ```
///
/// Choosing a method clears a forced fork; `force_fork` sets [`StartMethod::Fork`] with the
/// flag that makes the builder fork without `StartMethod::resolve` (no thread check).
macro_rules! start_setters {
    (
        $(#[$method_doc:meta])*
        fn start_method;
        $(#[$fork_doc:meta])*
        unsafe fn force_fork;
    ) => {
        $(#[$method_doc])*
        pub fn start_method(mut self, method: $crate::process::StartMethod) -> Self {
            self.method = method;
            self.forced_fork = false;
            self
        }

        $(#[$fork_doc])*
        pub unsafe fn force_fork(mut self) -> Self {
            self.method = $crate::process::StartMethod::Fork;
            self.forced_fork = true;
            self
        }
    };
}
pub(crate) use start_setters;

/// A start method after `Auto` was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    Fork,
    Server,
}

impl StartMethod {
    pub(crate) fn resolve(self) -> Result<Method, ProcessError> {
        // A guard this thread holds (or one a thread of this process exited holding) would
        // be copied into the child, where safe code could reach it (a thread-local, a leaked
        // static) and alias the parent's `&mut`.
        let holds = crate::sys::held::fork_would_copy_guards();
        match self {
            StartMethod::Fork if holds => Err(ProcessError::LocksHeld),
            StartMethod::Fork => match os::thread_count() {
                Some(1) => Ok(Method::Fork),
                n => Err(ProcessError::ThreadsExist { threads: n.unwrap_or(0) }),
            },
            StartMethod::ForkServer => {
                if fork_server::is_running() {
                    Ok(Method::Server)
                } else {
                    Err(ProcessError::NoForkServer)
                }
            }
            StartMethod::Auto => match os::thread_count() {
                Some(1) if !holds => Ok(Method::Fork),
                Some(1) if !fork_server::is_running() => Err(ProcessError::LocksHeld),
                n if fork_server::is_running() => {
                    let _ = n;
                    Ok(Method::Server)
                }
                n => Err(ProcessError::ThreadsExist { threads: n.unwrap_or(0) }),
            },
        }
    }
}

/// Who reaps the child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reaper {
    /// We are its parent: `waitpid`.
    Us,
    /// The fork server is its parent and writes the exit record.
    Server,
}

/// A running (or ended) child.
#[derive(Debug)]
pub(crate) struct Child {
    pid: libc::pid_t,
    pidfd: OwnedFd,
    reaper: Reaper,
    status: Option<ExitStatus>,
}

/// Start a child running `entry(seg, arg, fds)`. `seg` must start with an [`ExitRecord`].
/// With `Method::Fork` and `die_with_parent`, the child gets `PR_SET_PDEATHSIG(SIGKILL)`
/// tied to the calling thread.
pub(crate) fn spawn(
    method: Method,
    seg: &Segment,
    entry: Entry,
    arg: u64,
    fds: &[RawFd],
    die_with_parent: bool,
) -> Result<Child, ProcessError> {
    ExitRecord::of(seg).reset();
    match method {
        Method::Server => {
            let (pid, pidfd) = fork_server::spawn(seg, entry, arg, fds)?;
            Ok(Child { pid, pidfd, reaper: Reaper::Server, status: None })
        }
        Method::Fork => {
            let parent = os::getpid();
            // SAFETY: `resolve` chose `Method::Fork` only for a single-threaded process (or
            // the caller forced it through an `unsafe` opt-in that carries this contract).
            let pid = unsafe { os::fork() }.map_err(|e| ProcessError::os("fork", e))?;
            if pid == 0 {
                if die_with_parent {
                    os::die_with_parent(parent);
                }
                run_entry(entry, seg, arg, fds);
            }
            match os::pidfd_open(pid) {
                Ok(pidfd) => Ok(Child { pid, pidfd, reaper: Reaper::Us, status: None }),
                Err(e) => {
                    // Our own unreaped child: the number cannot have been reused.
                    os::kill_child(pid);
                    let _ = os::reap_blocking(pid);
                    Err(ProcessError::os("pidfd_open", e))
                }
            }
        }
    }
}

impl Child {
    pub(crate) fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// The pidfd (readable once the child has ended).
    pub(crate) fn pidfd(&self) -> RawFd {
        self.pidfd.as_raw_fd()
    }

    /// The exit status, if already known.
    #[allow(dead_code)]
    pub(crate) fn status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// Learn the exit status without blocking.
    pub(crate) fn try_wait(&mut self, record: &ExitRecord) -> Result<Option<ExitStatus>, ProcessError> {
        if self.status.is_none() {
            self.status = match self.reaper {
                Reaper::Us => os::try_reap(self.pid).map_err(|e| ProcessError::os("waitpid", e))?,
                Reaper::Server => record.read(),
            };
        }
        Ok(self.status)
    }

    /// Wait until the child ends or `deadline` passes.
    pub(crate) fn wait(&mut self, record: &ExitRecord, deadline: Deadline) -> Result<Option<ExitStatus>, ProcessError> {
        let mut ready = Vec::with_capacity(1);
        let mut gone_since: Option<std::time::Instant> = None;
        loop {
            if let Some(s) = self.try_wait(record)? {
                return Ok(Some(s));
            }
            if deadline.passed() {
                return Ok(None);
            }
            match self.reaper {
                Reaper::Us => {
                    let t = deadline.remaining().map(|r| r.max(Duration::from_millis(1)));
                    os::poll_readable(&[self.pidfd()], t, &mut ready).map_err(|e| ProcessError::os("poll", e))?;
                }
                Reaper::Server => {
                    record.wait_written(deadline, Duration::from_millis(50));
                    // The child is gone but no record came: is the server alive to write it?
                    os::poll_readable(&[self.pidfd()], Some(Duration::ZERO), &mut ready)
                        .map_err(|e| ProcessError::os("poll", e))?;
                    if ready.first() == Some(&true) && record.read().is_none() {
                        let since = *gone_since.get_or_insert_with(std::time::Instant::now);
                        if since.elapsed() > Duration::from_secs(2) {
                            return Err(ProcessError::ForkServerDied {
                                reason: format!("process {} ended but the server never reported how", self.pid),
                            });
                        }
                    }
                }
            }
        }
    }

    /// Send `sig` (through the pidfd: never to a reused pid). A child that already ended is not an error.
    pub(crate) fn signal(&self, sig: libc::c_int) -> Result<(), ProcessError> {
        if self.status.is_some() {
            return Ok(());
        }
        match os::pidfd_send_signal(self.pidfd.as_fd(), sig) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            Err(e) => Err(ProcessError::os("pidfd_send_signal", e)),
        }
    }

    /// SIGKILL the child if it still runs and wait (bounded) until it is reaped.
    pub(crate) fn kill_and_reap(&mut self, record: &ExitRecord) {
        if self.status.is_some() {
            return;
        }
        let _ = self.signal(libc::SIGKILL);
        let _ = self.wait(record, Deadline::after(Duration::from_secs(5)));
    }
}
