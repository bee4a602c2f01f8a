//! Replays the `queue_meta`, `dict_meta` and `list_meta` fuzz corpora
//! (`fuzz/corpus/<target>/`) through the checks the cargo-fuzz targets run
//! (`fuzz/src/meta.rs`, included below), plus the hand-made seeds.
//!
//! `cargo test --test fuzz_corpus_meta -- --ignored write_seeds` rewrites the seeds.

#[path = "../fuzz/src/meta.rs"]
mod meta;

#[path = "common/corpus.rs"]
mod corpus;

fn le(words: &[(usize, u64)], len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    for &(at, w) in words {
        v[at..at + 8].copy_from_slice(&w.to_ne_bytes());
    }
    v
}

fn with_flags(flags: u8, bytes: Vec<u8>) -> Vec<u8> {
    let mut v = vec![flags];
    v.extend(bytes);
    v
}

/// The ring words of a `Queue<u64>` of 4 slots (format 2), with some changed.
fn ring(changes: &[(usize, u64)]) -> Vec<u8> {
    let mut words = vec![(0, 0x5249_4E02), (8, 4), (16, 8), (24, 8), (32, 0)];
    words.extend_from_slice(changes);
    le(&words, 64)
}

fn queue_seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("empty", vec![]),
        ("zeros", vec![0; 321]),
        ("ones", vec![0xff; 321]),
        ("fixed-valid", with_flags(1, ring(&[]))),
        ("fixed-capacity", with_flags(1, ring(&[(8, 1 << 40)]))),
        ("fixed-stride", with_flags(1, ring(&[(16, 16), (24, 16)]))),
        ("fixed-offset", with_flags(1, ring(&[(32, 8)]))),
        ("bytes-max", with_flags(3, le(&[(0, 0x5249_4E02), (8, 4), (16, 64), (24, 57)], 64))),
        ("positions", with_flags(1, [ring(&[]), le(&[(0, u64::MAX)], 64), le(&[(0, 1 << 62)], 64)].concat())),
    ]
}

fn dict_seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![("empty", vec![]), ("zeros", vec![0; 193]), ("ones", vec![0xff; 193]), ("fixed-zeros", vec![1; 129])]
}

fn list_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let magic = u64::from(u32::from_le_bytes(*b"LST2"));
    let valid = |cap: u64, size: u64| le(&[(0, magic | size << 32), (8, cap), (16, 8)], 64);
    vec![
        ("empty", vec![]),
        ("zeros", vec![0; 65]),
        ("fixed-valid", with_flags(1, valid(8, 8))),
        ("fixed-capacity", with_flags(1, valid(9, 8))),
        ("fixed-size", with_flags(1, valid(8, 16))),
    ]
}

#[test]
fn seeds_pass() {
    for (name, data) in queue_seeds() {
        assert!(std::panic::catch_unwind(|| meta::check_queue_meta(&data)).is_ok(), "queue seed {name}");
    }
    for (name, data) in dict_seeds() {
        assert!(std::panic::catch_unwind(|| meta::check_dict_meta(&data)).is_ok(), "dict seed {name}");
    }
    for (name, data) in list_seeds() {
        assert!(std::panic::catch_unwind(|| meta::check_list_meta(&data)).is_ok(), "list seed {name}");
    }
}

#[test]
fn queue_meta_corpus_replays() {
    corpus::replay("queue_meta", queue_seeds().len(), meta::check_queue_meta);
}

#[test]
fn dict_meta_corpus_replays() {
    corpus::replay("dict_meta", dict_seeds().len(), meta::check_dict_meta);
}

#[test]
fn list_meta_corpus_replays() {
    corpus::replay("list_meta", list_seeds().len(), meta::check_list_meta);
}

#[test]
#[ignore = "rewrites fuzz/corpus/*_meta/seed-*; run by hand"]
fn write_seeds() {
    corpus::write_seeds("queue_meta", queue_seeds());
    corpus::write_seeds("dict_meta", dict_seeds());
    corpus::write_seeds("list_meta", list_seeds());
}
