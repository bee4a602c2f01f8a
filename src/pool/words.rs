//! Last words: with [`PoolBuilder::capture_stderr`](super::PoolBuilder::capture_stderr), each
//! worker's stderr is a pipe to the manager, which keeps the last bytes of it and attaches
//! them to the item a crash or a timeout fails
//! ([`TaskError::last_words`](super::TaskError::last_words)).
//!
//! The manager only ever reads the pipes without blocking (their read ends are non-blocking
//! and drained when `poll` says so), keeps at most `cap` bytes per worker, and never writes
//! anywhere but shared memory: a worker that prints a lot can only fill its own pipe and wait
//! for the manager, never stall it.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use crate::sys::stdio;

/// One worker's pipe and tail.
struct Tail {
    /// `None` once the writer closed it (a hung-up pipe would keep `poll` busy).
    read: Option<OwnedFd>,
    bytes: VecDeque<u8>,
}

/// Every worker's captured stderr (empty when capture is off).
pub(crate) struct Tails {
    cap: usize,
    tails: Vec<Option<Tail>>,
}

impl Tails {
    /// Tails of `cap` bytes for `workers` workers (`cap == 0`: no capture).
    pub fn new(workers: usize, cap: usize) -> Tails {
        Tails { cap, tails: (0..workers).map(|_| None).collect() }
    }

    /// A fresh pipe for (a new) worker `w`: returns the write end, to become its stderr.
    /// `None` when capture is off or no pipe could be made (the worker keeps our stderr).
    pub fn open(&mut self, w: usize) -> Option<OwnedFd> {
        if self.cap == 0 {
            return None;
        }
        let (read, write) = stdio::pipe_nonblocking_reader().ok()?;
        self.tails[w] = Some(Tail { read: Some(read), bytes: VecDeque::new() });
        Some(write)
    }

    /// Worker `to` is the one that was started with slot `from`'s pipe (a spare taking a
    /// mailbox): its tail moves there.
    pub fn adopt(&mut self, to: usize, from: usize) {
        if let Some(t) = self.tails.get_mut(from).and_then(Option::take) {
            self.tails[to] = Some(t);
        }
    }

    /// The read ends to poll, by worker (-1: none).
    pub fn fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.tails.iter().map(|t| t.as_ref().and_then(|t| t.read.as_ref()).map_or(-1, AsRawFd::as_raw_fd))
    }

    /// Move what worker `w` wrote into its tail, keeping the last `cap` bytes.
    pub fn drain(&mut self, w: usize) {
        let cap = self.cap;
        let Some(t) = self.tails.get_mut(w).and_then(Option::as_mut) else { return };
        let mut buf = [0u8; 4096];
        while let Some(read) = t.read.as_ref() {
            match stdio::read_available(read.as_fd(), &mut buf) {
                Ok(Some(0)) => break,
                // The writer is gone for good (a hung-up pipe would keep `poll` busy).
                Ok(None) | Err(_) => {
                    t.read = None;
                    break;
                }
                Ok(Some(n)) => {
                    t.bytes.extend(&buf[..n]);
                    let extra = t.bytes.len().saturating_sub(cap);
                    t.bytes.drain(..extra);
                }
            }
        }
    }

    /// Worker `w` is dead: its last words (drained to the end), and its pipe closed.
    pub fn last_words(&mut self, w: usize) -> String {
        self.drain(w);
        let Some(t) = self.tails.get_mut(w).and_then(Option::take) else { return String::new() };
        let bytes: Vec<u8> = t.bytes.into();
        String::from_utf8_lossy(&bytes).trim_end().to_owned()
    }
}
