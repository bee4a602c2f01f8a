//! `dict_ops`: sequences of `SharedDict` operations against a `HashMap` model (differential),
//! with hostile writes to the dict's control block mixed in.
//!
//! Input: byte 0 picks the capacity (1..=32, low 5 bits) and the stripes (1, 2, 4 or 8, high
//! bits); byte 1 the maximum key length (3..=18, low 4 bits) and the value type (bit 4:
//! `u64`, written with one atomic store, or a 20-byte `Wide`, written through the journal).
//! Then each byte is one operation (low 3 bits) on one of 32 keys (high 5 bits), some of
//! them longer than the maximum. Until a hostile write, every result must match the model
//! exactly (including `Full` and `KeyTooLong`); after one, every operation must still return
//! without panicking, hanging or touching memory outside the segment.
//!
//! This file is also included by `tests/fuzz_corpus_dict.rs`, which replays the corpus in
//! `fuzz/corpus/dict_ops/` under plain `cargo test`.
#![cfg_attr(fuzzing, no_main)]

use std::collections::HashMap;

use shmkit::manager::{DictOptions, ManagerError, SharedDict};
use shmkit::{Element, testing};

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| check_dict_ops(data));

/// A value wider than a word: overwrites go through the stripe's journal.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Wide([u32; 5]);

impl Element for Wide {
    const TYPE_NAME: &'static str = "fuzz::Wide";
}

/// What the model needs of a value type.
pub trait Val: Element + PartialEq + std::fmt::Debug {
    fn from_u64(v: u64) -> Self;
    fn step(self) -> Self;
}

impl Val for u64 {
    fn from_u64(v: u64) -> Self {
        v
    }
    fn step(self) -> Self {
        self.wrapping_mul(31).wrapping_add(7)
    }
}

impl Val for Wide {
    fn from_u64(v: u64) -> Self {
        Wide([v as u32, (v >> 32) as u32, 1, 2, v as u32 ^ 0xdead])
    }
    fn step(self) -> Self {
        Wide(self.0.map(|x| x.wrapping_mul(31).wrapping_add(7)))
    }
}

/// Key `i` of the fuzzer's 32: distinct, 1 to 21 bytes long.
pub fn key(i: u8) -> String {
    format!("{i}{}", "-".repeat(usize::from(i) % 20))
}

/// Run one input. Panics (the fuzzer's finding) when the dict and the model disagree, or on
/// any panic inside shmkit.
pub fn check_dict_ops(data: &[u8]) {
    let (Some(&b0), Some(&b1)) = (data.first(), data.get(1)) else { return };
    let capacity = 1 + usize::from(b0 & 31);
    let stripes = 1u32 << (b0 >> 5 & 3);
    let max_key_len = 3 + usize::from(b1 & 15);
    let opts = DictOptions::new().max_key_len(max_key_len).stripes(stripes);
    if b1 & 16 == 0 {
        run::<u64>(&opts, capacity, &data[2..]);
    } else {
        run::<Wide>(&opts, capacity, &data[2..]);
    }
}

fn run<V: Val>(opts: &DictOptions, capacity: usize, ops: &[u8]) {
    let d: SharedDict<str, V> = opts.anonymous(capacity).expect("create an anonymous dict");
    let max = d.max_key_len();
    let mut model: HashMap<String, V> = HashMap::new();
    let mut corrupted = false;
    let mut i = 0;
    while i < ops.len() {
        let (op, k) = (ops[i] & 7, ops[i] >> 3);
        i += 1;
        let key = key(k);
        let value = V::from_u64(i as u64 * 0x1_0000_0001);
        if corrupted {
            hostile(&d, op, &key, value);
            continue;
        }
        let too_long = key.len() > max;
        let room = model.contains_key(&key) || model.len() < capacity;
        match op {
            0 => {
                let r = d.insert(&key, value);
                match expect_room(&d, &key, r, too_long, room) {
                    Some(old) => assert_eq!(old, model.insert(key, value)),
                    None => continue,
                }
            }
            1 => {
                let r = d.remove(&key);
                if too_long {
                    assert!(matches!(r, Err(ManagerError::KeyTooLong { .. })), "{r:?}");
                } else {
                    assert_eq!(r.expect("remove"), model.remove(&key));
                }
            }
            2 => {
                let r = d.update(&key, value, V::step);
                if let Some(new) = expect_room(&d, &key, r, too_long, room) {
                    let v = model.entry(key).or_insert(value);
                    *v = v.step();
                    assert_eq!(new, *v);
                }
            }
            3 => {
                let r = d.get(&key);
                if too_long {
                    assert!(r.is_err());
                } else {
                    assert_eq!(r.expect("get"), model.get(&key).copied());
                }
            }
            4 => {
                let r = d.contains_key(&key);
                if too_long {
                    assert!(r.is_err());
                } else {
                    assert_eq!(r.expect("contains_key"), model.contains_key(&key));
                }
            }
            5 => {
                let snap: HashMap<String, V> = d.snapshot().expect("snapshot").into_iter().collect();
                assert_eq!(snap, model);
            }
            6 => {
                let (a, b) = (ops.get(i).copied().unwrap_or(0), ops.get(i + 1).copied().unwrap_or(0));
                let c = ops.get(i + 2).copied().unwrap_or(0);
                i += 3;
                let offset = usize::from(a) << 8 | usize::from(b);
                // SAFETY: nobody else uses this dict.
                corrupted = unsafe { testing::scribble(&d, offset * 7, c) };
            }
            _ => assert_eq!(d.len().expect("len"), model.len()),
        }
    }
    if corrupted {
        let _ = d.snapshot();
        let _ = d.len();
    } else {
        let snap: HashMap<String, V> = d.snapshot().expect("final snapshot").into_iter().collect();
        assert_eq!(snap, model);
        assert_eq!(d.len().expect("final len"), model.len());
        assert_eq!(testing::stats(&d).rollbacks, 0, "nothing died, nothing to roll back");
    }
}

/// Check the outcome of an insert-like call: `Some(value)` to compare with the model when it
/// succeeded, `None` when it was rightly refused.
fn expect_room<T: std::fmt::Debug, V: Val>(
    d: &SharedDict<str, V>,
    key: &str,
    r: Result<T, ManagerError>,
    too_long: bool,
    room: bool,
) -> Option<T> {
    if too_long {
        assert!(matches!(r, Err(ManagerError::KeyTooLong { .. })), "{r:?}");
        return None;
    }
    match r {
        Ok(v) => {
            assert!(room, "accepted an entry beyond the capacity");
            Some(v)
        }
        Err(ManagerError::Full { .. }) => {
            assert!(!room, "Full with room left");
            None
        }
        Err(ManagerError::StripeFull { .. }) => {
            assert!(room && !testing::stripe_has_room(d, key).expect("stripe_has_room"), "StripeFull without cause");
            None
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// After a hostile write: anything may fail, nothing may panic or hang.
fn hostile<V: Val>(d: &SharedDict<str, V>, op: u8, key: &str, value: V) {
    match op {
        0 => drop(d.insert(key, value)),
        1 => drop(d.remove(key)),
        2 => drop(d.update(key, value, V::step)),
        3 => drop(d.get(key)),
        4 => drop(d.contains_key(key)),
        5 => drop(d.snapshot()),
        // SAFETY: nobody else uses this dict.
        6 => drop(unsafe { testing::scribble(d, usize::from(op) * 131 + key.len(), value.as_bytes_first()) }),
        _ => drop(d.len()),
    }
}

trait FirstByte {
    fn as_bytes_first(&self) -> u8;
}

impl<V: Val> FirstByte for V {
    fn as_bytes_first(&self) -> u8 {
        bytemuck::bytes_of(self).first().copied().unwrap_or(0)
    }
}

/// Only the fuzzer builds this file as a binary (with `--cfg fuzzing`); a plain build of the
/// fuzz crate gets an empty main.
#[cfg(not(fuzzing))]
#[allow(dead_code)]
fn main() {}
