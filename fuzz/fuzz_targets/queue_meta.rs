//! Hostile bytes in a real segment's queue record, then open and operate (see `src/meta.rs`).
#![no_main]

#[path = "../src/meta.rs"]
#[allow(dead_code)]
mod meta;

libfuzzer_sys::fuzz_target!(|data: &[u8]| meta::check_queue_meta(data));
