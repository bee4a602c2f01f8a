//! The committed fuzz corpora (`fuzz/corpus/<target>/`), for the tests that replay them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Where the corpus of cargo-fuzz target `target` lives.
pub fn dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("corpus").join(target)
}

/// Every file of `target`'s corpus with its bytes, sorted by path.
pub fn files(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = dir(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

/// Run `check` (which panics on a failure) over every file of `target`'s corpus, which must
/// hold at least `at_least` files (the hand-made seeds).
pub fn replay(target: &str, at_least: usize, check: impl Fn(&[u8]) + std::panic::RefUnwindSafe) {
    let files = files(target);
    assert!(files.len() >= at_least, "the {target} corpus lost its seeds");
    for (path, data) in files {
        let r = std::panic::catch_unwind(|| check(&data));
        assert!(r.is_ok(), "{target} check failed on {}", path.display());
    }
}

/// Write the hand-made seeds as `seed-<label>` files of `target`'s corpus.
pub fn write_seeds<L: std::fmt::Display>(target: &str, seeds: impl IntoIterator<Item = (L, Vec<u8>)>) {
    let dir = dir(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    for (label, data) in seeds {
        std::fs::write(dir.join(format!("seed-{label}")), data).expect("write seed");
    }
}
