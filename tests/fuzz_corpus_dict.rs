//! Replays the `dict_ops` fuzz corpus (`fuzz/corpus/dict_ops/`) through the same check the
//! cargo-fuzz target runs (`fuzz/fuzz_targets/dict_ops.rs`, included below), plus the
//! hand-made seeds, so plain `cargo test` keeps them passing.
//!
//! `cargo test --test fuzz_corpus_dict -- --ignored write_seeds` rewrites the seeds.

#[allow(unexpected_cfgs, dead_code)]
#[path = "../fuzz/fuzz_targets/dict_ops.rs"]
mod dict_ops;

#[path = "common/corpus.rs"]
mod corpus;

/// Operation byte: `op` (0 insert, 1 remove, 2 update, 3 get, 4 contains, 5 snapshot,
/// 6 hostile write + 3 argument bytes, 7 len) on key `k` (0..32).
fn op(op: u8, k: u8) -> u8 {
    op | (k << 3)
}

/// Hand-made inputs: capacities and stripes, Full, long keys, the journalled value type, and
/// hostile writes.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let fill: Vec<u8> = (0..31).map(|k| op(0, k)).collect();
    let mut seeds = vec![
        ("cap1", vec![0, 15, op(0, 1), op(0, 2), op(2, 1), op(2, 3), op(1, 1), op(0, 2), op(5, 0), op(7, 0)]),
        ("update-remove", vec![3 | 1 << 5, 15, op(2, 4), op(2, 4), op(3, 4), op(1, 4), op(3, 4), op(4, 4), op(5, 0)]),
        ("long-keys", vec![31, 0, op(0, 19), op(0, 3), op(2, 18), op(3, 19), op(1, 19), op(4, 2), op(5, 0)]),
        ("wide-values", vec![7 | 2 << 5, 16 | 15, op(0, 1), op(2, 1), op(2, 2), op(0, 1), op(1, 2), op(5, 0)]),
        ("hostile", vec![9, 15, op(0, 1), op(0, 2), op(0, 3), op(6, 0), 0, 40, 0xff, op(2, 1), op(1, 2), op(5, 0)]),
        ("hostile-journal", vec![3 << 5, 16 | 15, op(0, 5), op(6, 0), 0, 30, 2, op(3, 5), op(2, 5), op(5, 0)]),
    ];
    let mut full = vec![15 | 3 << 5, 15];
    full.extend(&fill);
    full.extend([op(5, 0), op(7, 0)]);
    full.extend((0..20).map(|k| op(1, k)));
    full.extend(&fill);
    full.push(op(5, 0));
    seeds.push(("fill-drain-refill", full));
    let mut wide = vec![31 | 3 << 5, 16 | 15];
    wide.extend(&fill);
    wide.extend((0..31).map(|k| op(2, k)));
    wide.push(op(5, 0));
    seeds.push(("wide-fill-update", wide));
    seeds
}

#[test]
fn seeds_pass() {
    for (name, data) in seeds() {
        let r = std::panic::catch_unwind(|| dict_ops::check_dict_ops(&data));
        assert!(r.is_ok(), "seed {name} failed");
    }
}

#[test]
fn corpus_replays() {
    corpus::replay("dict_ops", seeds().len(), dict_ops::check_dict_ops);
}

#[test]
fn keys_cover_the_limits() {
    let lens: Vec<usize> = (0..32).map(|k| dict_ops::key(k).len()).collect();
    assert_eq!((lens.iter().min(), lens.iter().max()), (Some(&1), Some(&21)));
}

#[test]
#[ignore = "rewrites fuzz/corpus/dict_ops/seed-*; run by hand"]
fn write_seeds() {
    corpus::write_seeds("dict_ops", seeds());
}
