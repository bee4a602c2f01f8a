//! Replays the `queue_ops` fuzz corpus (`fuzz/corpus/queue_ops/`) through the same check
//! the cargo-fuzz target runs (`fuzz/fuzz_targets/queue_ops.rs`, included below), plus a
//! few hand-made sequences, so plain `cargo test` keeps them passing.
//!
//! `cargo test --test fuzz_corpus_queue -- --ignored write_seeds` rewrites the seeds.

#[path = "../fuzz/fuzz_targets/queue_ops.rs"]
mod queue_ops;

#[path = "common/corpus.rs"]
mod corpus;

/// Hand-made inputs: each flavour, full and empty edges, close, and hostile writes.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let put = |arg: u8| arg << 3;
    let get = 3u8;
    vec![
        ("fixed-fill-drain", vec![2, put(0), put(0), put(0), put(0), 5, get, get, get, get, 5]),
        ("fixed-timed", vec![0, 2, 2, 4, 4, 5]),
        ("fixed-close", vec![3, put(0), put(0), 6, put(0), get, get, get, 4, 5]),
        ("bytes-sizes", vec![8 | 3, put(0), put(16), put(17), put(5), get, get, get, 4, 5]),
        ("bytes-cap1-laps", vec![8, put(3), get, put(4), get, put(5), get, put(6), get, 5]),
        (
            "hostile-tail",
            vec![1, put(0), 7 | (1 << 3), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, put(0), get, get, 5],
        ),
        ("hostile-head", vec![1, put(0), 7, 9, 0, 0, 0, 0, 0, 0, 0, put(0), get, get, 5]),
        ("hostile-stamp", vec![3, put(0), 7 | (2 << 3), 1, 0, 0, 0, 0, 0, 0, 0, get, get, put(0), put(0), get, 5]),
        ("hostile-length", vec![8 | 1, put(4), 7 | (3 << 3), 0xff, 0xff, 0, 0, 0, 0, 0, 0, get, get, put(1), get, 5]),
    ]
}

#[test]
fn queue_ops_seeds_pass() {
    for (label, data) in seeds() {
        let r = std::panic::catch_unwind(|| queue_ops::check_queue_ops(&data));
        assert!(r.is_ok(), "seed {label} failed");
    }
}

#[test]
fn queue_ops_corpus_replays() {
    corpus::replay("queue_ops", seeds().len(), queue_ops::check_queue_ops);
}

#[test]
#[ignore = "rewrites fuzz/corpus/queue_ops/seed-*; run by hand"]
fn write_seeds() {
    corpus::write_seeds("queue_ops", seeds());
}
