//! `shmkit demo` run as a real binary: the JSON shape, exact locked/atomic counts, and a
//! lossy-or-exact (never more) unsynchronized count.

use std::process::Command;

fn shmkit(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shmkit")).args(args).output().expect("run shmkit")
}

#[test]
fn demo_json_reports_exact_locked_and_atomic_counts() {
    let out = shmkit(&["demo", "--processes", "3", "--increments", "20000", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["schema"], 1);
    assert_eq!(v["processes"], 3);
    assert_eq!(v["increments"], 20000);
    assert_eq!(v["expected"], 60000);
    for way in ["unsynchronized", "locked", "atomic"] {
        assert!(v[way]["per_second"].as_f64().unwrap() > 0.0, "{way}");
    }
    assert_eq!(v["locked"]["final"], 60000);
    assert_eq!(v["atomic"]["final"], 60000);
    let lossy = v["unsynchronized"]["final"].as_u64().unwrap();
    // Lost updates make it smaller (how much is up to the scheduler); never larger.
    assert!((1..=60000).contains(&lossy), "{lossy}");
}

#[test]
fn demo_prints_a_table() {
    let out = shmkit(&["demo", "--processes", "2", "--increments", "1000"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in ["unsynchronized", "locked", "atomic", "lost %", "increments/s", "expected 2000"] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    for args in [
        &["demo", "--processes", "0"][..],
        &["demo", "--processes", "1025"],
        &["demo", "--increments", "0"],
        &["demo", "--increments", "x"],
        &["demo", "--bogus"],
        &["nope"],
    ] {
        let out = shmkit(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: ") && err.contains("--help"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: usage errors go to stderr");
    }
}
