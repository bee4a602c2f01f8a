//! The whole open path on a real `/dev/shm` file holding arbitrary bytes.
#![no_main]

#[path = "../src/checks.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_open_file(data));
