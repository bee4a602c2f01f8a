//! `shmkit ls / inspect / rm / gc` driven as a real binary on real segments, including
//! garbage, truncated and newer-format ones.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::{Command, Output};

use common::{ShmFile, exists, unique_name};
use serde_json::Value;
use shmkit::segment::header;
use shmkit::{Segment, SharedArray, SharedAtomic, SharedValue};

fn shmkit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmkit")).args(args).output().expect("run shmkit")
}

fn json(args: &[&str]) -> Value {
    let out = shmkit(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["schema"], 1, "{args:?}: {v}");
    v
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn ls_lists_shmkit_segments_with_their_headers() {
    let _serial = common::serial(); // gc removes any unmapped test file: one test at a time
    let a = SharedArray::<f32>::create(None, 10).unwrap();
    let foreign = ShmFile::new("ls-foreign", b"plain bytes");
    let rows = json(&["ls", "--json"])["segments"].clone();
    let row = rows.as_array().unwrap().iter().find(|r| r["name"] == a.name().unwrap()).expect("listed");
    assert_eq!(row["shmkit"], true);
    assert_eq!(row["kind"], "array");
    assert_eq!(row["element_type"], "f32");
    assert_eq!(row["length"], 10);
    assert_eq!(row["creator_pid"], std::process::id());
    assert_eq!(row["mapped"], true);
    assert!(row["created"].as_str().unwrap().ends_with('Z'));
    assert!(!rows.as_array().unwrap().iter().any(|r| r["name"] == foreign.0.as_str()), "foreign skipped");
    let all = json(&["ls", "--all", "--json"]);
    let f = all["segments"].as_array().unwrap().iter().find(|r| r["name"] == foreign.0.as_str()).expect("--all");
    assert_eq!((&f["shmkit"], &f["kind"], &f["bytes"]), (&Value::Bool(false), &Value::Null, &Value::from(11)));
    let text = String::from_utf8_lossy(&shmkit(&["ls"]).stdout).into_owned();
    let line = text.lines().find(|l| l.contains(a.name().unwrap())).expect("listed in the table");
    assert!(line.contains("KiB"), "sizes are human-readable: {line}");
}

#[test]
fn inspect_summarizes_each_kind() {
    let _serial = common::serial(); // gc removes any unmapped test file: one test at a time
    let a = SharedArray::<i64>::create(None, [4, 25]).unwrap();
    a.copy_from_slice(0, &(0..100).map(|i| i - 50).collect::<Vec<_>>()).unwrap();
    let v = json(&["inspect", "--json", a.name().unwrap()]);
    let seg = &v["segment"];
    assert_eq!(v["summary"]["shape"], serde_json::json!([4, 25]), "inspect shows the shape");
    assert_eq!(
        (seg["kind"].as_str(), seg["element_type"].as_str(), seg["length"].as_u64()),
        (Some("array"), Some("i64"), Some(100))
    );
    assert_eq!(seg["format_version"], header::FORMAT_VERSION);
    assert_eq!(seg["name"], a.name().unwrap());
    // Integers stay integers.
    let first: Vec<i64> = v["summary"]["first"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
    assert_eq!(first, [-50, -49, -48, -47, -46, -45, -44, -43]);
    assert_eq!((v["summary"]["min"].as_i64(), v["summary"]["max"].as_i64()), (Some(-50), Some(49)));
    assert_eq!(v["summary"]["claims"], serde_json::json!({"used": 0, "capacity": 128}));
    assert_eq!(seg["mapped"], true);
    assert_eq!(v["error"], Value::Null);
    // The segment fields are ls's, for the same segment.
    let listed =
        json(&["ls", "--json"])["segments"].as_array().unwrap().iter().find(|r| r["name"] == seg["name"]).cloned();
    assert_eq!(listed.as_ref(), Some(seg), "inspect and ls agree");
    // A name without the leading slash is the same segment, normalised.
    let bare = json(&["inspect", "--json", a.name().unwrap().trim_start_matches('/')]);
    assert_eq!(bare["segment"]["name"], a.name().unwrap());

    let val = SharedValue::<f64>::create(None, 2.5).unwrap();
    assert_eq!(json(&["inspect", "--json", val.name().unwrap()])["summary"]["value"], 2.5);
    let at = SharedAtomic::<u64>::create(None, 7).unwrap();
    assert_eq!(json(&["inspect", "--json", at.name().unwrap()])["summary"]["value"], 7);
    let text = String::from_utf8(shmkit(&["inspect", a.name().unwrap()]).stdout).unwrap();
    assert!(text.contains("element type     i64") && text.contains("min"), "{text}");
}

#[test]
fn inspect_fails_cleanly_on_bad_segments() {
    let _serial = common::serial(); // gc removes any unmapped test file: one test at a time
    let garbage = ShmFile::new("garbage", &[0x5a; 4096]);
    let short = ShmFile::new("short", b"xyz");
    let mut newer = vec![0u8; 256];
    let mut raw: header::RawHeader = bytemuck::Zeroable::zeroed();
    raw.magic = header::MAGIC;
    raw.version = header::FORMAT_VERSION + 1;
    raw.state = header::READY;
    newer[..128].copy_from_slice(bytemuck::bytes_of(&raw));
    let newer = ShmFile::new("newer", &newer);
    let mut truncated = newer_bytes_truncated();
    truncated.truncate(200);
    let truncated = ShmFile::new("truncated", &truncated);
    for (f, needle) in [
        (&garbage, "not a shmkit segment"),
        (&short, "not a shmkit segment"),
        (&newer, "upgrade shmkit"),
        (&truncated, "truncated"),
    ] {
        let out = shmkit(&["inspect", &f.0]);
        assert_eq!(out.status.code(), Some(2), "{}", f.0);
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(needle) && !err.contains("panicked"), "{err}");
    }
    let out = shmkit(&["inspect", &unique_name("missing")]);
    assert_eq!(out.status.code(), Some(2));
}

fn newer_bytes_truncated() -> Vec<u8> {
    let info = header::HeaderInfo {
        version: header::FORMAT_VERSION,
        kind: header::Kind::Bytes,
        elem: header::TypeInfo { size: 1, align: 1, name: "u8".into() },
        payload_offset: 128,
        payload_len: 1000,
        elem_count: 1000,
        creator_pid: 1,
        created_unix_ns: 0,
    };
    let mut raw = header::build(&info);
    raw.state = header::READY;
    let mut v = bytemuck::bytes_of(&raw).to_vec();
    v.resize(1128, 0);
    v
}

#[test]
fn rm_refuses_mapped_segments_unless_forced() {
    let _serial = common::serial(); // gc removes any unmapped test file: one test at a time
    let seg = Segment::create(None, 64).unwrap();
    let name = seg.name().unwrap().to_owned();
    let out = shmkit(&["rm", &name]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("live process"), "{}", stderr(&out));
    assert!(exists(&name));
    let v = json(&["rm", "--force", "--json", &name]);
    assert_eq!((&v["command"], &v["dry_run"]), (&Value::from("rm"), &Value::Bool(false)));
    assert_eq!(v["results"][0]["action"], "removed");
    assert_eq!(v["results"][0]["name"], name.as_str());
    assert!(!exists(&name));
    let mut stale = Segment::create(None, 64).unwrap();
    stale.persist();
    let stale_name = stale.name().unwrap().to_owned();
    drop(stale);
    assert!(shmkit(&["rm", &stale_name]).status.success());
    assert!(!exists(&stale_name));
    assert_eq!(shmkit(&["rm"]).status.code(), Some(2));
}

#[test]
fn gc_removes_exactly_the_stale_segments() {
    let _serial = common::serial(); // gc removes any unmapped test file: one test at a time
    let live = SharedArray::<u8>::create(None, 8).unwrap();
    let mut stale = SharedArray::<u8>::create(None, 8).unwrap();
    stale.persist();
    let stale_name = stale.name().unwrap().to_owned();
    drop(stale);
    let foreign = ShmFile::new("gc-foreign", b"not ours");
    let dry = json(&["gc", "--dry-run", "--json"]);
    assert_eq!((&dry["command"], &dry["dry_run"]), (&Value::from("gc"), &Value::Bool(true)));
    let entry = serde_json::json!({"name": stale_name, "action": "would_remove", "exit_code": 0, "error": null});
    assert!(dry["results"].as_array().unwrap().contains(&entry), "{dry}");
    assert!(exists(&stale_name), "dry run removes nothing");
    let done = json(&["gc", "--json"]);
    assert_eq!(done["dry_run"], false);
    let removed: Vec<&Value> = done["results"].as_array().unwrap().iter().map(|r| &r["name"]).collect();
    assert!(done["results"].as_array().unwrap().iter().all(|r| r["action"] == "removed"));
    assert!(removed.iter().any(|n| *n == stale_name.as_str()));
    assert!(!removed.iter().any(|n| *n == live.name().unwrap() || *n == foreign.0.as_str()));
    assert!(!exists(&stale_name) && exists(live.name().unwrap()) && exists(&foreign.0));
}

#[test]
fn inspect_summarizes_queues_dicts_and_lists() {
    let _serial = common::serial();
    let q = shmkit::channel::Queue::<u64>::create(None, 8).unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    let v = json(&["inspect", "--json", q.name().unwrap()]);
    assert_eq!((v["segment"]["kind"].as_str(), v["summary"]["capacity"].as_u64()), (Some("queue"), Some(8)));
    assert_eq!((v["summary"]["len"].as_u64(), v["summary"]["closed"].as_bool()), (Some(2), Some(false)));
    let b = shmkit::channel::ByteQueue::create(None, 4, 64).unwrap();
    b.put(b"hello").unwrap();
    let v = json(&["inspect", "--json", b.name().unwrap()]);
    assert_eq!((v["summary"]["capacity"].as_u64(), v["summary"]["len"].as_u64()), (Some(4), Some(1)));
    let d = shmkit::SharedDict::<str, u64>::create(None, 100).unwrap();
    d.insert("a", 1).unwrap();
    d.insert("b", 2).unwrap();
    let v = json(&["inspect", "--json", d.name().unwrap()]);
    assert_eq!((v["segment"]["kind"].as_str(), v["summary"]["len"].as_u64()), (Some("dict"), Some(2)));
    assert_eq!(v["summary"]["key_type"], "str");
    assert!(v["summary"]["capacity"].as_u64().unwrap() >= 100);
    let l = shmkit::SharedList::<i32>::create(None, 10).unwrap();
    l.push(5).unwrap();
    let v = json(&["inspect", "--json", l.name().unwrap()]);
    assert_eq!(
        (v["segment"]["kind"].as_str(), v["summary"]["len"].as_u64(), v["summary"]["capacity"].as_u64()),
        (Some("list"), Some(1), Some(10))
    );
}
