//! The pool's configuration as it crosses shared memory: written into the header by the pool
//! before the manager exists, read back once by the manager and checked field by field
//! against the segment's size and the pool's limits. Workers use the manager's private,
//! checked copy (they are its forks), so no process trusts a configuration word later.
//!
//! Also the MAC that binds an entry's code addresses to the pool that wrote them.

use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::PoolError;
use super::layout::{Header, INIT_ARG_CAP, Shape, View};
use crate::segment::Segment;

/// Most workers a pool may have.
pub(crate) const MAX_WORKERS: usize = 1 << 12;
/// Queued entries per worker, at most.
pub(crate) const MAX_DEPTH: usize = 1 << 16;
/// Task message sizes, in bytes.
pub(crate) const MIN_MSG: usize = 64;
pub(crate) const MAX_MSG: usize = 1 << 24;
/// The longest start-up timeout a pool accepts.
pub(crate) const MAX_START_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// The most stderr bytes kept per worker.
pub(crate) const MAX_STDERR_TAIL: usize = 1 << 16;

/// Every field that is checked, by index (the index crosses processes, the name does not).
const FIELDS: [&str; 16] = [
    "segment length",
    "header.pool_pid",
    "header.workers",
    "header.depth",
    "header.msg",
    "header.init_arg_len",
    "header.direct_fork",
    "header.start_timeout_ms",
    "header.init_mac",
    "header.stderr_tail",
    "mailbox.tail",
    "mailbox.head",
    "entry.mac",
    "entry.outcome",
    "header.broken_field",
    "header.manager",
];

/// A shared word that holds an impossible value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Corrupt {
    field: u32,
    pub value: u64,
}

impl Corrupt {
    /// `field` must be one of the names in `FIELDS`.
    pub fn new(field: &'static str, value: u64) -> Corrupt {
        let i = FIELDS.iter().position(|&f| f == field).unwrap_or(FIELDS.len() - 2);
        Corrupt { field: i as u32, value }
    }

    /// From the index and value the manager published.
    pub fn from_raw(field: u32, value: u64) -> Corrupt {
        if (field as usize) < FIELDS.len() {
            Corrupt { field, value }
        } else {
            Corrupt::new("header.broken_field", u64::from(field))
        }
    }

    pub fn field(&self) -> &'static str {
        FIELDS[self.field as usize]
    }

    pub fn index(&self) -> u32 {
        self.field
    }
}

impl From<Corrupt> for PoolError {
    fn from(c: Corrupt) -> PoolError {
        PoolError::Corrupt { field: c.field(), value: c.value }
    }
}

/// The pool's configuration (the checked, private copy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Config {
    pub shape: Shape,
    pub pool_pid: libc::pid_t,
    pub max_tasks: u64,
    /// Initializer trampoline and function, 0 for none.
    pub init_tramp: u64,
    pub init_fn: u64,
    pub init_arg_len: usize,
    pub direct_fork: bool,
    pub start_timeout: Duration,
    /// Bytes of each worker's stderr the manager keeps (0: stderr not captured).
    pub stderr_tail: usize,
    /// The MAC key: never in shared memory (the manager receives it as its start argument).
    pub key: u64,
}

/// The manager's checked configuration; its forks (the workers) read it from here, never
/// from shared memory.
static INSTALLED: OnceLock<Config> = OnceLock::new();

impl Config {
    /// Make this the configuration of this process (the manager; its forks inherit it) and
    /// return it. A second call returns the first configuration.
    pub(crate) fn install(self) -> &'static Config {
        INSTALLED.get_or_init(|| self)
    }

    /// The configuration installed in this process (the manager and its workers), if any.
    pub(crate) fn installed() -> Option<&'static Config> {
        INSTALLED.get()
    }

    /// The MAC over the initializer fields.
    fn init_mac(&self) -> u64 {
        mac(self.key, &[self.init_tramp, self.init_fn, self.init_arg_len as u64])
    }

    /// Write the configuration (all but the key) into a fresh segment's header.
    pub fn publish(&self, hdr: &Header) {
        let words = [
            (&hdr.pool_pid, self.pool_pid as u64),
            (&hdr.workers, self.shape.workers as u64),
            (&hdr.depth, self.shape.depth as u64),
            (&hdr.msg, self.shape.msg as u64),
            (&hdr.max_tasks, self.max_tasks),
            (&hdr.init_tramp, self.init_tramp),
            (&hdr.init_fn, self.init_fn),
            (&hdr.init_arg_len, self.init_arg_len as u64),
            (&hdr.direct_fork, u64::from(self.direct_fork)),
            (&hdr.start_timeout_ms, self.start_timeout.as_millis() as u64),
            (&hdr.init_mac, self.init_mac()),
            (&hdr.stderr_tail, self.stderr_tail as u64),
        ];
        for (word, v) in words {
            word.store(v, Ordering::Relaxed);
        }
    }

    /// Read and check the configuration of `seg` (the manager, once, at start), with the
    /// MAC key the pool handed over privately.
    pub fn load(seg: &Segment, key: u64) -> Result<Config, Corrupt> {
        let hdr = View::header_of(seg).ok_or(Corrupt::new("segment length", seg.len() as u64))?;
        let get = |w: &std::sync::atomic::AtomicU64| w.load(Ordering::Relaxed);
        let ranged = |field: &'static str, v: u64, lo: usize, hi: usize| {
            if v < lo as u64 || v > hi as u64 { Err(Corrupt::new(field, v)) } else { Ok(v as usize) }
        };
        let pid = get(&hdr.pool_pid);
        let pool_pid = ranged("header.pool_pid", pid, 1, i32::MAX as usize)? as libc::pid_t;
        let shape = Shape {
            workers: ranged("header.workers", get(&hdr.workers), 1, MAX_WORKERS)?,
            depth: ranged("header.depth", get(&hdr.depth), 1, MAX_DEPTH)?,
            msg: ranged("header.msg", get(&hdr.msg), MIN_MSG, MAX_MSG)?,
        };
        if View::with_shape(seg, shape).is_none() {
            // The shape asks for more bytes than the segment has.
            return Err(Corrupt::new("segment length", seg.len() as u64));
        }
        let init_arg_len = ranged("header.init_arg_len", get(&hdr.init_arg_len), 0, INIT_ARG_CAP)?;
        let direct_fork = ranged("header.direct_fork", get(&hdr.direct_fork), 0, 1)? == 1;
        let max_ms = MAX_START_TIMEOUT.as_millis() as usize;
        let ms = ranged("header.start_timeout_ms", get(&hdr.start_timeout_ms), 1, max_ms)?;
        let stderr_tail = ranged("header.stderr_tail", get(&hdr.stderr_tail), 0, MAX_STDERR_TAIL)?;
        let config = Config {
            shape,
            pool_pid,
            max_tasks: get(&hdr.max_tasks),
            init_tramp: get(&hdr.init_tramp),
            init_fn: get(&hdr.init_fn),
            init_arg_len,
            direct_fork,
            start_timeout: Duration::from_millis(ms as u64),
            stderr_tail,
            key,
        };
        let m = get(&hdr.init_mac);
        if m != config.init_mac() {
            return Err(Corrupt::new("header.init_mac", m));
        }
        Ok(config)
    }

    /// The MAC of an entry: who runs it, where, and what code with which sizes.
    pub fn entry_mac(&self, w: usize, index: u32, tramp: u64, func: u64, count: u32, arg_len: u32) -> u64 {
        entry_mac(self.key, w, index, tramp, func, count, arg_len)
    }
}

/// The MAC of an entry under `key` (the pool side, which holds the key but no `Config`).
pub(crate) fn entry_mac(key: u64, w: usize, index: u32, tramp: u64, func: u64, count: u32, arg_len: u32) -> u64 {
    let place = ((w as u64) << 32) | u64::from(index);
    mac(key, &[place, tramp, func, (u64::from(count) << 32) | u64::from(arg_len)])
}

/// SipHash-2-4 of `words` under a key derived from `key`: a keyed PRF, so that a process
/// without the key cannot produce a MAC that matches.
#[allow(deprecated)] // std's SipHasher is deprecated for hash tables, not as SipHash-2-4.
fn mac(key: u64, words: &[u64]) -> u64 {
    use std::hash::Hasher;
    let mut h = std::hash::SipHasher::new_with_keys(key, key.rotate_left(17) ^ 0x736f_6d65_7073_6575);
    for w in words {
        h.write_u64(*w);
    }
    h.finish()
}

/// A fresh random MAC key.
pub(crate) fn new_key() -> Result<u64, PoolError> {
    let mut b = [0u8; 8];
    crate::sys::fd::random_bytes(&mut b).map_err(|e| PoolError::Os { op: "getrandom", source: e })?;
    Ok(u64::from_ne_bytes(b))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::pool::layout::{HEADER_LEN, View};
    use crate::process::EXIT_RECORD_LEN;

    fn config(key: u64) -> Config {
        Config {
            shape: Shape { workers: 2, depth: 4, msg: 128 },
            pool_pid: 4242,
            max_tasks: 0,
            init_tramp: 0x1000,
            init_fn: 0x2000,
            init_arg_len: 8,
            direct_fork: false,
            start_timeout: Duration::from_secs(20),
            stderr_tail: 512,
            key,
        }
    }

    /// Which header word a case writes.
    type Word = fn(&Header) -> &AtomicU64;

    /// Every checked header word, with the values that must be refused.
    fn hostile() -> Vec<(&'static str, Word, u64)> {
        vec![
            ("header.pool_pid", |h| &h.pool_pid, 0),
            ("header.pool_pid", |h| &h.pool_pid, u64::MAX),
            ("header.pool_pid", |h| &h.pool_pid, i32::MAX as u64 + 1),
            ("header.workers", |h| &h.workers, 0),
            ("header.workers", |h| &h.workers, u64::MAX),
            ("header.workers", |h| &h.workers, MAX_WORKERS as u64 + 1),
            ("header.depth", |h| &h.depth, 0),
            ("header.depth", |h| &h.depth, u64::MAX),
            ("header.depth", |h| &h.depth, MAX_DEPTH as u64 + 1),
            ("header.msg", |h| &h.msg, 0),
            ("header.msg", |h| &h.msg, u64::MAX),
            ("header.msg", |h| &h.msg, MIN_MSG as u64 - 1),
            ("header.msg", |h| &h.msg, MAX_MSG as u64 + 1),
            ("header.init_arg_len", |h| &h.init_arg_len, u64::MAX),
            ("header.init_arg_len", |h| &h.init_arg_len, INIT_ARG_CAP as u64 + 1),
            ("header.direct_fork", |h| &h.direct_fork, 2),
            ("header.direct_fork", |h| &h.direct_fork, u64::MAX),
            ("header.start_timeout_ms", |h| &h.start_timeout_ms, 0),
            ("header.start_timeout_ms", |h| &h.start_timeout_ms, u64::MAX),
            ("header.start_timeout_ms", |h| &h.start_timeout_ms, MAX_START_TIMEOUT.as_millis() as u64 + 1),
            ("header.stderr_tail", |h| &h.stderr_tail, u64::MAX),
            ("header.stderr_tail", |h| &h.stderr_tail, MAX_STDERR_TAIL as u64 + 1),
            ("header.init_mac", |h| &h.init_mac, 0),
            ("header.init_mac", |h| &h.init_mac, u64::MAX),
            // The code addresses and the argument length are bound by the MAC: any change,
            // even a legal-looking one, is refused.
            ("header.init_mac", |h| &h.init_tramp, 0x1001),
            ("header.init_mac", |h| &h.init_fn, 0),
            ("header.init_mac", |h| &h.init_arg_len, 7),
            ("header.init_mac", |h| &h.init_arg_len, 0),
        ]
    }

    /// `config(key)` and an anonymous segment of the size its shape asks for.
    fn config_and_segment(key: u64) -> (Config, Segment) {
        let c = config(key);
        let seg = Segment::anonymous(c.shape.total()).unwrap();
        (c, seg)
    }

    /// Publish `c` in `seg`, overwrite `word` with `bad`, and load: the field refused, if any.
    fn load_with(c: &Config, seg: &Segment, word: &AtomicU64, bad: u64) -> Result<Config, &'static str> {
        c.publish(View::header_of(seg).unwrap());
        word.store(bad, Ordering::Relaxed);
        Config::load(seg, c.key).map_err(|e| e.field())
    }

    #[test]
    fn every_config_word_is_checked_at_0_max_and_one_past_its_limit() {
        let key = 0x1234_5678_9abc_def0;
        let (c, seg) = config_and_segment(key);
        let hdr = View::header_of(&seg).unwrap();
        c.publish(hdr);
        assert_eq!(Config::load(&seg, key), Ok(c));
        // Without the key (another process), even the pool's own bytes do not pass.
        assert_eq!(Config::load(&seg, key ^ 1).map_err(|e| e.field()), Err("header.init_mac"));
        for (field, word, bad) in hostile() {
            assert_eq!(load_with(&c, &seg, word(hdr), bad), Err(field), "{field} = {bad}");
            let e: PoolError = Corrupt::new(field, bad).into();
            assert!(e.to_string().contains(field), "{e}");
        }
    }

    #[test]
    fn a_shape_larger_than_the_segment_is_refused() {
        let key = 7;
        let (c, seg) = config_and_segment(key);
        let hdr = View::header_of(&seg).unwrap();
        // Legal values each, but the shape they make needs more bytes than the segment has.
        assert!(Shape { workers: 3, ..c.shape }.total() > seg.len());
        for (word, v) in [(&hdr.workers, 3), (&hdr.depth, 4096), (&hdr.msg, 1 << 20)] {
            assert_eq!(load_with(&c, &seg, word, v), Err("segment length"), "{v}");
        }
        // A segment too short for the header at all.
        let tiny = Segment::anonymous(EXIT_RECORD_LEN + HEADER_LEN - 1).unwrap();
        if tiny.len() < EXIT_RECORD_LEN + HEADER_LEN {
            assert_eq!(Config::load(&tiny, key).map_err(|e| e.field()), Err("segment length"));
        }
    }

    #[test]
    fn entry_macs_bind_slot_code_and_sizes() {
        let c = config(99);
        let m = c.entry_mac(1, 5, 0x10, 0x20, 3, 24);
        assert_eq!(m, entry_mac(99, 1, 5, 0x10, 0x20, 3, 24));
        for other in [
            c.entry_mac(0, 5, 0x10, 0x20, 3, 24),
            c.entry_mac(1, 6, 0x10, 0x20, 3, 24),
            c.entry_mac(1, 5, 0x11, 0x20, 3, 24),
            c.entry_mac(1, 5, 0x10, 0x21, 3, 24),
            c.entry_mac(1, 5, 0x10, 0x20, 4, 24),
            c.entry_mac(1, 5, 0x10, 0x20, 3, 25),
            entry_mac(98, 1, 5, 0x10, 0x20, 3, 24),
        ] {
            assert_ne!(m, other);
        }
    }
}
