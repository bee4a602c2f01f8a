//! `header::validate` on arbitrary bytes: first 8 bytes are the file length, the rest the header.
#![no_main]

#[path = "../src/checks.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_header(data));
