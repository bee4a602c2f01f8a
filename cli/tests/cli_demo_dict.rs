//! The dict section of `shmkit demo`, run as a real binary: the JSON member's shape, an exact
//! `update()` count, and a lossy-or-exact (never more) get + insert count.

use std::process::Command;

fn shmkit(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shmkit")).args(args).output().expect("run shmkit")
}

#[test]
fn demo_json_has_an_exact_locked_dict_count() {
    let out = shmkit(&["demo", "--processes", "3", "--increments", "20000", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let dict = &v["dict"];
    assert_eq!(dict["increments"], 20000);
    assert_eq!(dict["expected"], 60000);
    for way in ["unsynchronized", "locked"] {
        assert!(dict[way]["per_second"].as_f64().unwrap() > 0.0, "{way}");
    }
    assert_eq!(dict["locked"]["final"], 60000);
    // Lost updates make it smaller (how much is up to the scheduler); never larger.
    let lossy = dict["unsynchronized"]["final"].as_u64().unwrap();
    assert!((1..=60000).contains(&lossy), "{lossy}");
}

#[test]
fn demo_table_has_a_dict_section() {
    let out = shmkit(&["demo", "--processes", "2", "--increments", "1000"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in ["SharedDict", "get + insert", "update()", "updates/s", "(expected 2000)"] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}
