//! The claim table fed hostile bytes: a real `SharedArray` whose control block (the table
//! header, its lock, every slot's lock, mode and range) is overwritten with the input, then
//! driven through every `try_` and timed claim operation (blocking ones may wait for ever
//! on a lock word that names a holder, which is what a lock word is for). Each must return (a claim or a typed
//! error) without a panic, a hang or a fault.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shmkit::SharedArray;
use shmkit::segment::header::HEADER_SIZE;

/// Elements of the array under test, and its claim slots.
pub const ELEMS: usize = 64;
pub const SLOTS: usize = 4;

/// The control block of `a`, as raw bytes.
fn control(a: &SharedArray<u64>) -> (*mut u8, usize) {
    let h = a.segment().header().expect("a typed segment").clone();
    let offset = h.payload_offset as usize;
    (a.segment().as_ptr().wrapping_sub(offset).wrapping_add(HEADER_SIZE), offset - HEADER_SIZE)
}

/// Input layout: byte 0 = flags (bit 0: keep the table's shape words valid), bytes 1.. =
/// the control block's new bytes (as many as given), and the last 16 bytes also drive the
/// ranges of the operations.
pub fn check_claim_table(data: &[u8]) {
    let Some((&flags, body)) = data.split_first() else { return };
    let a = SharedArray::<u64>::create_with(&shmkit::SegmentOptions::new(), None, ELEMS, SLOTS).expect("create");
    let (ctl, len) = control(&a);
    let n = body.len().min(len);
    // SAFETY: the control block lies inside the mapping `a` keeps alive; nothing else uses
    // it concurrently (this process holds no claim yet, and the array is anonymous).
    unsafe { std::ptr::copy_nonoverlapping(body.as_ptr(), ctl, n) };
    if flags & 1 != 0 {
        // SAFETY: offsets 16 and 24 of the control block are the table's 8-aligned u64
        // shape words (capacity, elements), accessed atomically by the crate.
        unsafe {
            AtomicU64::from_ptr(ctl.add(16).cast()).store(SLOTS as u64, Ordering::Relaxed);
            AtomicU64::from_ptr(ctl.add(24).cast()).store(ELEMS as u64, Ordering::Relaxed);
        }
    }
    let pick = |i: usize| data.get(data.len().saturating_sub(1 + i)).copied().unwrap_or(0) as usize;
    let range = |i: usize| {
        let s = pick(i) % (ELEMS + 2);
        s..(s + 1 + pick(i + 1) % 8)
    };
    let short = Duration::from_millis(2);
    let _ = a.claim_slots();
    drop(a.try_claim(range(0)));
    drop(a.try_claim_mut(range(2)));
    drop(a.claim_timeout(range(4), short));
    drop(a.claim_mut_timeout(range(6), short));
    // Two claims held at once, then released in the other order.
    let first = a.try_claim(range(10));
    let second = a.try_claim_mut(range(12));
    drop(first);
    drop(second);
    let _ = a.claim_slots();
}

/// Hand-made seeds: a valid table, and each field of it set to 0, max and off by one.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let a = SharedArray::<u64>::create_with(&shmkit::SegmentOptions::new(), None, ELEMS, SLOTS).expect("create");
    let (ctl, len) = control(&a);
    // Take one claim so a slot holds a real lock state, mode and range.
    let held = a.claim_mut(3..9).expect("claim");
    // SAFETY: `len` bytes of control block inside the live mapping.
    let good = unsafe { std::slice::from_raw_parts(ctl, len) }.to_vec();
    drop(held);
    let table = good[..table_len()].to_vec();
    let mut out = vec![("valid".to_owned(), [&[0u8][..], &table].concat())];
    let fields: [(&str, usize, usize); 7] = [
        ("capacity", 16, 8),
        ("elems", 24, 8),
        ("lock-state", 32, 4),
        ("lock-owner", 36, 4),
        ("slot0-state", table_len() - 72 * SLOTS, 4),
        ("slot0-mode", table_len() - 72 * SLOTS + 48, 4),
        ("slot0-end", table_len() - 72 * SLOTS + 64, 8),
    ];
    for (name, off, width) in fields {
        for (tag, value) in [("zero", 0u64), ("max", u64::MAX), ("plus1", 1), ("init-dead", 0x8000_0001)] {
            let mut b = good.clone();
            let old = u64::from_ne_bytes({
                let mut w = [0u8; 8];
                w[..width].copy_from_slice(&b[off..off + width]);
                w
            });
            let v = if tag == "plus1" { old.wrapping_add(value) } else { value };
            b[off..off + width].copy_from_slice(&v.to_ne_bytes()[..width]);
            out.push((format!("{name}-{tag}"), [&[0u8][..], &b].concat()));
        }
    }
    out
}

/// Bytes of the table header plus its slots as this build lays them out.
fn table_len() -> usize {
    80 + 72 * SLOTS
}
