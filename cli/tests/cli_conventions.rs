//! The command-line conventions users expect: `-h/--help` and `-V/--version` on stdout with
//! exit 0, `help CMD` and `CMD --help`, `--` ending options, shell completions, and one exit
//! code per kind of failure across every command (0 ok, 1 refused or failed, 2 usage error or
//! bad segment), in text and JSON alike.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::{Command, Output};

use common::{ShmFile, exists, unique_name};
use serde_json::Value;
use shmkit::{Segment, SharedArray};

fn shmkit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmkit")).args(args).output().expect("run shmkit")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const COMMANDS: [&str; 6] = ["demo", "ls", "inspect", "rm", "gc", "completions"];

#[test]
fn help_and_version_print_on_stdout_and_exit_0() {
    let mut cases: Vec<Vec<&str>> = vec![vec!["-h"], vec!["--help"], vec!["help"], vec!["-V"], vec!["--version"]];
    for cmd in COMMANDS {
        cases.extend([vec![cmd, "--help"], vec![cmd, "-h"], vec!["help", cmd]]);
    }
    for args in &cases {
        let out = shmkit(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).is_empty(), "{args:?} wrote to stderr: {}", stderr(&out));
        assert!(!stdout(&out).is_empty(), "{args:?} printed nothing");
    }
    for flag in ["-V", "--version"] {
        assert_eq!(stdout(&shmkit(&[flag])), format!("shmkit {}\n", env!("CARGO_PKG_VERSION")));
    }
    let top = stdout(&shmkit(&["--help"]));
    for needle in
        ["Usage: shmkit", "Exit codes:", "0  success", "1  refused or failed", "2  usage error or bad segment"]
    {
        assert!(top.contains(needle), "--help lacks {needle:?}:\n{top}");
    }
    for cmd in COMMANDS {
        assert!(top.contains(cmd), "--help lists {cmd}");
        let help = stdout(&shmkit(&["help", cmd]));
        assert_eq!(help, stdout(&shmkit(&[cmd, "--help"])), "`help {cmd}` is `{cmd} --help`");
        assert!(help.contains(&format!("Usage: shmkit {cmd}")), "{cmd}: {help}");
        assert!(help.contains("Exit codes:"), "{cmd} --help documents the exit codes:\n{help}");
    }
    assert!(stdout(&shmkit(&["help", "ls"])).contains("--all"));
    assert!(stdout(&shmkit(&["help", "rm"])).contains("--dry-run"));
}

#[test]
fn usage_errors_exit_2_on_stderr() {
    for args in [
        &[][..],
        &["nope"],
        &["ls", "--bogus"],
        &["ls", "extra"],
        &["rm"],
        &["inspect"],
        &["inspect", "a", "b"],
        &["gc", "--force"],
        &["completions", "tcsh"],
        &["help", "nope"],
    ] {
        let out = shmkit(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).is_empty() && stdout(&out).is_empty(), "{args:?}: the error goes to stderr only");
    }
}

#[test]
fn double_dash_ends_options() {
    let _serial = common::serial(); // gc removes any unmapped test file: one test at a time
    // A valid segment name that looks like an option.
    let name = format!("-{}", unique_name("dash").trim_start_matches('/'));
    let a = SharedArray::<u8>::create(Some(&name), 4).unwrap();
    let slashed = a.name().unwrap().to_owned();
    assert_eq!(slashed, format!("/{name}"));
    assert_eq!(shmkit(&["inspect", &name]).status.code(), Some(2), "without --, {name} is an unknown option");
    let out = shmkit(&["inspect", "--json", "--", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["segment"]["name"], slashed.as_str(), "names are normalised to one leading /");
    let out = shmkit(&["rm", "--force", "--json", "--", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["results"][0]["name"], slashed.as_str());
    assert!(!exists(&slashed));
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = shmkit(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(script.contains("shmkit") && script.contains("inspect") && script.contains("dry-run"), "{shell}");
    }
}

/// The same failure gives the same exit code from every command, in text and JSON.
#[test]
fn exit_codes_are_the_same_for_the_same_failure() {
    let _serial = common::serial();
    let missing = unique_name("missing");
    let foreign = ShmFile::new("codes-foreign", b"plain bytes");
    let mapped = Segment::create(None, 64).unwrap();
    let live = mapped.name().unwrap().to_owned();
    // (failure, name, exit code of every command that reads or removes it)
    let cases =
        [("missing", missing.as_str(), 2), ("not a shmkit segment", foreign.0.as_str(), 2), ("invalid name", "a/b", 2)];
    for (what, name, code) in cases {
        for args in [
            &["inspect", name][..],
            &["inspect", "--json", name],
            &["rm", name],
            &["rm", "--json", name],
            &["rm", "--dry-run", name],
        ] {
            let out = shmkit(args);
            assert_eq!(out.status.code(), Some(code), "{what}: {args:?}: {}", stderr(&out));
            assert!(!stderr(&out).contains("panicked"), "{args:?}");
        }
    }
    // Refused: a segment a live process maps, with or without --dry-run.
    for args in [&["rm", live.as_str()][..], &["rm", "--dry-run", &live], &["rm", "--json", &live]] {
        let out = shmkit(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(exists(&live));
    }
    // Several names: the worst code wins, and each result carries its own.
    let mut seg = Segment::create(None, 64).unwrap();
    seg.persist();
    let stale = seg.name().unwrap().to_owned();
    drop(seg);
    let out = shmkit(&["rm", "--dry-run", "--json", &stale, &live, &missing]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], 1);
    assert_eq!(v["dry_run"], true);
    let codes: Vec<(&str, u64)> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["action"].as_str().unwrap(), r["exit_code"].as_u64().unwrap()))
        .collect();
    assert_eq!(codes, [("would_remove", 0), ("kept", 1), ("kept", 2)]);
    assert!(exists(&stale), "a dry run removes nothing");
    let out = shmkit(&["rm", "--json", &stale, &live]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["results"][0]["action"], "removed");
    assert!(v["results"][1]["error"].as_str().is_some_and(|e| e.contains("live process")), "{v}");
    assert!(!exists(&stale) && exists(&live));
}
