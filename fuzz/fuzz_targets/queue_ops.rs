//! `queue_ops`: sequences of queue operations against a `VecDeque` model, with hostile
//! writes to the ring's shared words mixed in.
//!
//! Input: byte 0 picks the capacity (1..=8) and the flavour (`Queue<u32>` or a 16-byte
//! `ByteQueue`); then each byte is one operation (low 3 bits) with its argument (high 5
//! bits). Until a hostile write, every result must match the model exactly; after one,
//! operations must still return (an error or a value) without panicking, hanging or
//! touching memory outside the segment.
//!
//! This file is also included by `tests/fuzz_corpus_queue.rs`, which replays the corpus in
//! `fuzz/corpus/queue_ops/` under plain `cargo test`.
#![cfg_attr(fuzzing, no_main)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shmkit::channel::{ByteQueue, GetError, PutError, Queue};

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| check_queue_ops(data));

/// Byte offsets in a queue's control block (see `src/channel/layout.rs`): the ring header
/// is five 64-byte lines (info, head, tail, consumer and producer waiters), then one
/// 64-byte slot record per slot, its stamp first.
const HEAD: usize = 64;
const TAIL: usize = 128;
const SLOTS: usize = 320;
const HEADER_SIZE: usize = 128;
const MAX_MSG: usize = 16;

enum Flavour {
    Fixed(Queue<u32>),
    Bytes(ByteQueue),
}

impl Flavour {
    fn segment(&self) -> &shmkit::Segment {
        match self {
            Flavour::Fixed(q) => q.segment(),
            Flavour::Bytes(q) => q.segment(),
        }
    }

    fn capacity(&self) -> usize {
        match self {
            Flavour::Fixed(q) => q.capacity(),
            Flavour::Bytes(q) => q.capacity(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Flavour::Fixed(q) => q.len(),
            Flavour::Bytes(q) => q.len(),
        }
    }

    fn close(&self) -> bool {
        match self {
            Flavour::Fixed(q) => q.close(),
            Flavour::Bytes(q) => q.close(),
        }
    }

    /// Put message `n` (`len` bytes for byte queues); `timed` uses a zero timeout.
    fn put(&self, n: u32, len: usize, timed: bool) -> Result<(), PutError<()>> {
        let zero = Duration::ZERO;
        match self {
            Flavour::Fixed(q) => {
                let r = if timed { q.put_timeout(n, zero) } else { q.try_put(n) };
                r.map_err(|e| {
                    assert_eq!(e_val(&e), Some(n), "the message must come back");
                    strip(e)
                })
            }
            Flavour::Bytes(q) => {
                let msg = message(n, len);
                let r = if timed { q.put_timeout(&msg, zero) } else { q.try_put(&msg) };
                r.map_err(strip)
            }
        }
    }

    fn get(&self, timed: bool) -> Result<Vec<u8>, GetError> {
        let zero = Duration::ZERO;
        match self {
            Flavour::Fixed(q) => {
                let r = if timed { q.get_timeout(zero) } else { q.try_get() };
                r.map(|v| v.to_le_bytes().to_vec())
            }
            Flavour::Bytes(q) => {
                if timed {
                    q.get_timeout(zero)
                } else {
                    q.try_get_with(<[u8]>::to_vec)
                }
            }
        }
    }
}

fn e_val(e: &PutError<u32>) -> Option<u32> {
    match e {
        PutError::Full(v) | PutError::Closed(v) | PutError::Timeout(v) => Some(*v),
        PutError::TooLarge { msg, .. } | PutError::Corrupt { msg, .. } => Some(*msg),
        _ => None,
    }
}

fn strip<T>(e: PutError<T>) -> PutError<()> {
    match e {
        PutError::Full(_) => PutError::Full(()),
        PutError::Closed(_) => PutError::Closed(()),
        PutError::Timeout(_) => PutError::Timeout(()),
        PutError::Disconnected(_) => PutError::Disconnected(()),
        PutError::TooLarge { len, max, .. } => PutError::TooLarge { msg: (), len, max },
        PutError::Corrupt { reason, .. } => PutError::Corrupt { msg: (), reason },
        _ => PutError::Corrupt { msg: (), reason: "unknown error variant" },
    }
}

/// Message `n` of a byte queue: `len` bytes derived from `n`.
fn message(n: u32, len: usize) -> Vec<u8> {
    (0..len).map(|i| (n as usize).wrapping_mul(31).wrapping_add(i) as u8).collect()
}

/// Run one input. Panics only on a real bug (a model mismatch before any hostile write).
pub fn check_queue_ops(data: &[u8]) {
    let Some((&first, ops)) = data.split_first() else { return };
    let cap = usize::from(first & 7) + 1;
    let q = if first & 8 == 0 {
        Flavour::Fixed(Queue::<u32>::anonymous(cap).expect("create a queue"))
    } else {
        Flavour::Bytes(ByteQueue::anonymous(cap, MAX_MSG).expect("create a byte queue"))
    };
    let bytes = matches!(q, Flavour::Bytes(_));
    let mut model: VecDeque<Vec<u8>> = VecDeque::new();
    let mut closed = false;
    let mut hostile = false;
    let mut next = 0u32;
    let mut i = 0;
    while i < ops.len() {
        let (op, arg) = (ops[i] & 7, usize::from(ops[i] >> 3));
        i += 1;
        match op {
            0..=2 => {
                let len = if bytes { arg % (MAX_MSG + 4) } else { 4 };
                let timed = op == 2;
                let n = next;
                next += 1;
                let r = q.put(n, len, timed);
                if hostile {
                    continue;
                }
                // The size is checked first, then closed, then room.
                let want = if bytes && len > MAX_MSG {
                    Err(PutError::TooLarge { msg: (), len, max: MAX_MSG })
                } else if closed {
                    Err(PutError::Closed(()))
                } else if model.len() == cap {
                    Err(if timed { PutError::Timeout(()) } else { PutError::Full(()) })
                } else {
                    Ok(())
                };
                assert_eq!(format!("{r:?}"), format!("{want:?}"), "put #{n} (len {len})");
                if r.is_ok() {
                    model.push_back(if bytes { message(n, len) } else { n.to_le_bytes().to_vec() });
                }
            }
            3 | 4 => {
                let timed = op == 4;
                let r = q.get(timed);
                if hostile {
                    if let Ok(m) = r {
                        assert!(m.len() <= MAX_MSG.max(4), "a message longer than the slots");
                    }
                    continue;
                }
                let want = match model.pop_front() {
                    Some(m) => Ok(m),
                    None if closed => Err(GetError::Closed),
                    None if timed => Err(GetError::Timeout),
                    None => Err(GetError::Empty),
                };
                assert_eq!(r, want, "get");
            }
            5 => {
                let len = q.len();
                assert!(len <= q.capacity(), "len {len} exceeds the capacity");
                if !hostile {
                    assert_eq!(len, model.len(), "len");
                }
            }
            6 => {
                if arg % 4 == 0 {
                    let first = q.close();
                    if !hostile {
                        assert_eq!(first, !closed, "close reports whether it closed");
                    }
                    closed = true;
                }
            }
            _ => {
                // Hostile write: 8 bytes of input into a ring word or a length word.
                let mut word = [0u8; 8];
                let take = ops.len().saturating_sub(i).min(8);
                word[..take].copy_from_slice(&ops[i..i + take]);
                i += take;
                scribble(&q, arg, u64::from_le_bytes(word));
                hostile = true;
            }
        }
    }
}

/// Store `value` into the head, the tail, a stamp, or (byte queues) a length word.
fn scribble(q: &Flavour, which: usize, value: u64) {
    let seg = q.segment();
    let h = seg.header().expect("typed segment");
    let cap = q.capacity();
    let payload = seg.as_ptr();
    let control = payload.wrapping_sub(h.payload_offset as usize).wrapping_add(HEADER_SIZE);
    let offset = match which % 4 {
        0 => HEAD,
        1 => TAIL,
        2 => SLOTS + 64 * (which / 4 % cap),
        _ => {
            if let Flavour::Bytes(_) = q {
                let slot = which / 4 % cap;
                // SAFETY: slot `slot` lies inside the payload (stride = elem size); its
                // first 8-aligned word is the length.
                let p = unsafe { payload.add(slot * h.elem.size as usize) };
                // SAFETY: in bounds and 8-aligned (payload and stride are 64-byte multiples).
                unsafe { AtomicU64::from_ptr(p.cast::<u64>()) }.store(value, Ordering::Relaxed);
                return;
            }
            TAIL
        }
    };
    // SAFETY: every offset lies inside the control block this layout gives a ring of `cap`
    // slots, 8-aligned; the words are atomics, written here as a hostile process would.
    unsafe { AtomicU64::from_ptr(control.add(offset).cast::<u64>()) }.store(value, Ordering::Relaxed);
}
