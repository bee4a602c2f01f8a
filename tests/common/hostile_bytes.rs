//! Writing hostile bytes into a segment's file, as a peer with write access could.
#![allow(dead_code)]

use std::fs::File;
use std::os::unix::fs::FileExt;

/// Start of the control block (after the 128-byte segment header).
pub const CTL: usize = 128;
/// Bytes of a ring's shared header (five cache lines) and of one slot's metadata.
pub const RING_HEADER: usize = 320;
/// Bytes of one ring slot's metadata (stamp and lock).
pub const SLOT_META: usize = 64;

/// The file behind a named segment.
pub fn path(name: &str) -> String {
    format!("/dev/shm/{}", name.trim_start_matches('/'))
}

/// The `width`-byte native-endian word at `at`.
pub fn read_word(f: &File, at: usize, width: usize) -> u64 {
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b[..width], at as u64).expect("read field");
    u64::from_ne_bytes(b)
}

/// Store the low `width` bytes of `v` (native-endian) at `at`.
pub fn write_word(f: &File, at: usize, width: usize, v: u64) {
    f.write_all_at(&v.to_ne_bytes()[..width], at as u64).expect("write field");
}

/// 0, the maximum and off by one either way, without the original value.
pub fn hostile_values(orig: u64, width: usize) -> Vec<u64> {
    let max = if width == 8 { u64::MAX } else { (1u64 << (8 * width)) - 1 };
    let mut v = vec![0, max, orig.wrapping_add(1) & max, orig.wrapping_sub(1) & max];
    v.retain(|&x| x != orig);
    v.sort_unstable();
    v.dedup();
    v
}
