//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the same checks the
//! cargo-fuzz targets run, so plain `cargo test` keeps every input the fuzzer found
//! interesting honest, without libFuzzer or a nightly toolchain.
//!
//! `cargo test --test fuzz_corpus -- --ignored write_seeds` regenerates the hand-made seed
//! inputs (`seed-*`) from real segments.

#[path = "../fuzz/src/checks.rs"]
mod checks;
#[path = "common/corpus.rs"]
mod corpus;

use std::sync::{Mutex, MutexGuard, PoisonError};

use shmkit::segment::header::{self, HEADER_SIZE, Kind, READY};
use shmkit::{Segment, SegmentOptions, SharedArray, SharedAtomic, SharedValue};

/// The tests that make `/dev/shm` files run one at a time, so each can check for leftovers.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn leftovers() -> Vec<String> {
    let me = format!("fuzz-shmkit-{}-", std::process::id());
    std::fs::read_dir("/dev/shm")
        .map(|d| d.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| n.starts_with(&me)).collect())
        .unwrap_or_default()
}

#[test]
fn header_corpus_replays() {
    let files = corpus::files("header");
    assert!(files.len() >= 5, "the header corpus lost its seeds");
    let mut accepted = 0;
    for (path, data) in &files {
        let r = std::panic::catch_unwind(|| checks::check_header(data));
        assert!(r.is_ok(), "header check failed on {}", path.display());
        let (len, bytes) = checks::split_header_input(data);
        accepted += usize::from(header::validate(bytes, len).is_ok());
    }
    assert!(accepted > 0, "no corpus input gets past validation: the seeds are broken");
}

#[test]
fn open_file_corpus_replays() {
    let _serial = serial();
    let files = corpus::files("open_file");
    assert!(files.len() >= 5, "the open_file corpus lost its seeds");
    let mut opened = 0;
    for (path, data) in &files {
        let r = std::panic::catch_unwind(|| checks::check_open_file(data));
        assert!(r.is_ok(), "open_file check failed on {}", path.display());
        opened += usize::from(header::validate(data, data.len() as u64).is_ok());
    }
    assert!(opened > 0, "no corpus file is a valid segment: the seeds are broken");
    assert_eq!(leftovers(), Vec::<String>::new(), "fuzz files left in /dev/shm");
}

/// Hand-made hostile inputs that must keep failing cleanly (in addition to the corpus).
#[test]
fn crafted_inputs_fail_cleanly() {
    let _serial = serial();
    let mut good = [0u8; HEADER_SIZE];
    good[..8].copy_from_slice(&header::MAGIC);
    good[8..12].copy_from_slice(&header::FORMAT_VERSION.to_ne_bytes());
    good[12..16].copy_from_slice(&READY.to_ne_bytes());
    good[16..20].copy_from_slice(&Kind::Bytes.code().to_ne_bytes());
    good[20..24].copy_from_slice(&1u32.to_ne_bytes());
    good[24..32].copy_from_slice(&1u64.to_ne_bytes());
    good[32..40].copy_from_slice(&(HEADER_SIZE as u64).to_ne_bytes());
    good[40..48].copy_from_slice(&16u64.to_ne_bytes());
    good[48..56].copy_from_slice(&16u64.to_ne_bytes());
    good[72..74].copy_from_slice(b"u8");
    let mut file = good.to_vec();
    file.extend_from_slice(&[7u8; 16]);
    assert!(header::validate(&file, file.len() as u64).is_ok());
    checks::check_open_file(&file);
    // Every single-field overflow or truncation.
    for (at, width) in [(20, 4), (24, 8), (32, 8), (40, 8), (48, 8)] {
        for v in [0u64, 1, 3, u64::from(u32::MAX), u64::MAX / 2, u64::MAX - 127, u64::MAX] {
            let mut f = file.clone();
            f[at..at + width].copy_from_slice(&v.to_ne_bytes()[..width]);
            checks::check_header(&checks::header_input(f.len() as u64, &f));
            checks::check_open_file(&f);
        }
    }
    for cut in [0, 1, 8, 16, 127, 128, 129, file.len() - 1] {
        checks::check_header(&checks::header_input(cut as u64, &file[..cut]));
        checks::check_open_file(&file[..cut]);
    }
    assert_eq!(leftovers(), Vec::<String>::new());
}

/// Copy a live segment's file, whole.
fn file_of(name: &str) -> Vec<u8> {
    std::fs::read(format!("/dev/shm{name}")).expect("read a segment file")
}

#[test]
#[ignore = "regenerates fuzz/corpus/*/seed-*; run by hand"]
fn write_seeds() {
    let mut files: Vec<(&str, Vec<u8>)> = Vec::new();
    let bytes = SegmentOptions::new().reserve(false).create(None, 64).expect("bytes segment");
    files.push(("bytes", file_of(bytes.name().expect("named"))));
    let a = SharedArray::<f64>::create_with(&SegmentOptions::new(), None, 4, 1).expect("array");
    files.push(("array-f64", file_of(a.name().expect("named"))));
    let a = SharedArray::<u8>::create_with(&SegmentOptions::new(), None, 3, 2).expect("array");
    files.push(("array-u8", file_of(a.name().expect("named"))));
    let v = SharedValue::<f64>::create(None, 1.5).expect("value");
    files.push(("value-f64", file_of(v.name().expect("named"))));
    let v = SharedAtomic::<u64>::create(None, 7).expect("atomic");
    files.push(("atomic-u64", file_of(v.name().expect("named"))));
    let mut unpublished = files[0].1.clone();
    unpublished[12..16].copy_from_slice(&0u32.to_ne_bytes());
    files.push(("unpublished", unpublished));
    let raw = Segment::create_raw(None, 32).expect("raw");
    files.push(("raw", file_of(raw.name().expect("named"))));

    for target in ["header", "open_file"] {
        std::fs::create_dir_all(corpus::dir(target)).expect("corpus dir");
    }
    for (label, data) in &files {
        let len = data.len() as u64;
        let head = &data[..data.len().min(HEADER_SIZE)];
        std::fs::write(corpus::dir("header").join(format!("seed-{label}")), checks::header_input(len, head))
            .expect("write seed");
        std::fs::write(corpus::dir("open_file").join(format!("seed-{label}")), data).expect("write seed");
    }
}
