//! A claim table holding arbitrary bytes, driven through every non-blocking claim operation.
#![no_main]

#[path = "../src/claim_checks.rs"]
mod claim_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| claim_checks::check_claim_table(data));
