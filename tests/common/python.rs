//! Running CPython with numpy and `python/shmkit.py` from a test.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Whether python3 with numpy runs here (else print why the test is skipped).
pub fn has_numpy() -> bool {
    let probe = Command::new("python3").args(["-c", "import numpy"]).output();
    let ok = matches!(&probe, Ok(o) if o.status.success());
    if !ok {
        eprintln!("SKIPPED: python3 with numpy is not available");
    }
    ok
}

/// Run `script` with `args`, `shmkit` importable from the source tree; `None` when python3
/// or numpy is missing (`.ci/run` installs both, so CI always runs these).
pub fn python(script: &str, args: &[&str]) -> Option<Output> {
    python_with(concat!(env!("CARGO_MANIFEST_DIR"), "/python"), script, args)
}

/// As [`python`], with `shmkit` imported from `path`.
pub fn python_with(path: &str, script: &str, args: &[&str]) -> Option<Output> {
    if !has_numpy() {
        return None;
    }
    Some(Command::new("python3").arg("-c").arg(script).args(args).env("PYTHONPATH", path).output().unwrap())
}

/// The exit code, after printing stderr.
pub fn check(out: &Output) -> i32 {
    if !out.stderr.is_empty() {
        eprintln!("python stderr: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.code().unwrap_or(-1)
}
