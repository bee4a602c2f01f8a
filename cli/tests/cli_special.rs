//! The CLI at the edges: special files at a name, foreign files, empty files, corrupt
//! control blocks and hostile header fields. Every command returns promptly, says what it
//! found in one line on stderr, never panics, and never removes what is not a segment
//! without `--force`.

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../../tests/common/hostile.rs"]
mod hostile;

use std::os::unix::fs::FileExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{exists, unique_name};
use serde_json::Value;
use shmkit::segment::header::HEADER_SIZE;
use shmkit::{Segment, SharedArray};

/// Longest any command may run (inspect waits 1 s for an unpublished segment).
const PROMPT: Duration = Duration::from_secs(5);

/// Run the CLI, killing it (and failing) after `PROMPT`.
fn shmkit(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shmkit");
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > PROMPT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("shmkit {args:?} did not finish within {PROMPT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().expect("output")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One line on stderr, no panic, and the exit code asked for.
fn assert_fails(out: &Output, code: i32, needle: &str, what: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{what}: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert!(err.contains(needle), "{what}: expected {needle:?} in {err}");
}

/// A special file planted at a unique name in /dev/shm, removed on drop.
struct Planted {
    name: String,
    what: &'static str,
    path: String,
    _keep: Option<std::os::unix::net::UnixListener>,
}

impl Planted {
    fn all() -> Vec<Planted> {
        ["FIFO", "directory", "socket", "symbolic link"].into_iter().map(Planted::new).collect()
    }

    fn new(what: &'static str) -> Planted {
        let name = unique_name("cli-special");
        let path = format!("/dev/shm{name}");
        let mut keep = None;
        match what {
            "FIFO" => {
                let c = std::ffi::CString::new(path.clone()).unwrap();
                // SAFETY: `c` is a valid NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
            }
            "directory" => std::fs::create_dir(&path).unwrap(),
            "socket" => keep = Some(std::os::unix::net::UnixListener::bind(&path).unwrap()),
            _ => std::os::unix::fs::symlink("/dev/shm/shmkit-test-nowhere", &path).unwrap(),
        }
        Planted { name, what, path, _keep: keep }
    }

    fn present(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok()
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.path);
    }
}

#[test]
fn every_command_refuses_special_files_promptly() {
    let _serial = common::serial();
    let planted = Planted::all();
    for p in &planted {
        let what = format!("a {} at {}", p.what, p.name);
        assert_fails(&shmkit(&["inspect", &p.name]), 2, p.what, &format!("inspect on {what}"));
        let out = shmkit(&["inspect", "--json", &p.name]);
        assert_fails(&out, 2, p.what, &format!("inspect --json on {what}"));
        let v: Value = serde_json::from_slice(&out.stdout).expect("inspect --json prints JSON");
        assert!(v["error"].as_str().is_some_and(|e| e.contains(p.what)), "{v}");
        let out = shmkit(&["rm", &p.name]);
        assert_fails(&out, 2, p.what, &format!("rm on {what}"));
        let how = if p.what == "directory" { "never removes directories" } else { "--force" };
        assert!(stderr(&out).contains(how), "rm says how to remove it anyway: {}", stderr(&out));
        assert!(p.present(), "rm without --force left {what} alone");
    }
    for args in [&["ls"][..], &["ls", "--all"], &["ls", "--all", "--json"], &["gc", "--dry-run"]] {
        let out = shmkit(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(!planted.iter().any(|p| listing.contains(&p.name)), "{args:?} lists a special file: {listing}");
    }
    for p in &planted {
        let out = shmkit(&["rm", "--force", &p.name]);
        if p.what == "directory" {
            assert_fails(&out, 2, "directory", "rm --force on a directory");
            assert!(p.present(), "shmkit never removes directories");
        } else {
            assert!(out.status.success(), "rm --force on a {}: {}", p.what, stderr(&out));
            assert!(!p.present(), "rm --force removed the {}", p.what);
        }
    }
}

#[test]
fn rm_removes_a_foreign_file_only_with_force() {
    let _serial = common::serial();
    let name = unique_name("cli-foreign");
    let path = format!("/dev/shm{name}");
    std::fs::write(&path, b"plain bytes, no shmkit header").unwrap();
    let out = shmkit(&["rm", &name]);
    assert_fails(&out, 2, "not a shmkit segment", "rm on a foreign file");
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert!(exists(&name), "rm without --force left the foreign file alone");
    let out = shmkit(&["rm", "--json", &name]);
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((&v["results"][0]["action"], &v["results"][0]["exit_code"]), (&Value::from("kept"), &Value::from(2)));
    assert!(v["results"][0]["error"].as_str().is_some_and(|e| e.contains("not a shmkit segment")), "{v}");
    assert!(exists(&name));
    assert!(shmkit(&["rm", "--force", &name]).status.success());
    assert!(!exists(&name));
    // A raw segment has no shmkit header either.
    let raw = Segment::create_raw(None, 64).unwrap();
    assert_fails(&shmkit(&["rm", raw.name().unwrap()]), 2, "not a shmkit segment", "rm on a raw segment");
    assert!(exists(raw.name().unwrap()));
    // An empty file is named as such.
    let empty = unique_name("cli-empty");
    std::fs::write(format!("/dev/shm{empty}"), b"").unwrap();
    let out = shmkit(&["rm", &empty]);
    assert_fails(&out, 2, "empty file", "rm on an empty file");
    assert!(exists(&empty));
    assert!(shmkit(&["rm", "--force", &empty]).status.success());
    assert!(!exists(&empty));
}

#[test]
fn inspect_reports_an_empty_file_quickly() {
    let _serial = common::serial();
    let empty = unique_name("cli-empty");
    let path = format!("/dev/shm{empty}");
    std::fs::write(&path, b"").unwrap();
    let t = Instant::now();
    let out = shmkit(&["inspect", &empty]);
    let _ = std::fs::remove_file(&path);
    assert_fails(&out, 2, "empty file, not a shmkit segment", "inspect on an empty file");
    assert!(!stderr(&out).contains("creator may have died"), "{}", stderr(&out));
    assert!(t.elapsed() < Duration::from_millis(900), "no full open timeout: {:?}", t.elapsed());
}

#[test]
fn inspect_fails_on_a_corrupt_claim_table() {
    let _serial = common::serial();
    let a = SharedArray::<f64>::create(None, 16).unwrap();
    let name = a.name().unwrap().to_owned();
    let file = std::fs::OpenOptions::new().write(true).open(format!("/dev/shm{name}")).unwrap();
    // The claim table's capacity (control block offset 16) becomes 0.
    file.write_at(&0u64.to_ne_bytes(), HEADER_SIZE as u64 + 16).unwrap();
    let out = shmkit(&["inspect", &name]);
    assert_fails(&out, 2, "corrupt", "inspect on a corrupt claim table");
    assert_eq!(stderr(&out).lines().count(), 1, "one line: {}", stderr(&out));
    let out = shmkit(&["inspect", "--json", &name]);
    assert_fails(&out, 2, "corrupt", "inspect --json on a corrupt claim table");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert!(v["error"].as_str().is_some_and(|e| e.contains("corrupt")), "top-level error: {v}");
    assert_eq!(v["segment"]["kind"], "array", "the header is still shown: {v}");
}

#[test]
fn hostile_header_fields_never_panic_the_cli() {
    let _serial = common::serial();
    let files: Vec<(String, String, Vec<u8>)> = hostile::cases()
        .into_iter()
        .map(|(label, bytes)| {
            let name = unique_name("cli-hostile");
            std::fs::write(format!("/dev/shm{name}"), &bytes).unwrap();
            (label, name, bytes)
        })
        .collect();
    let cleanup = || {
        for (_, name, _) in &files {
            let _ = std::fs::remove_file(format!("/dev/shm{name}"));
        }
    };
    let result = std::panic::catch_unwind(|| {
        let out = shmkit(&["ls", "--all", "--json"]);
        assert!(out.status.success(), "ls: {}", stderr(&out));
        let rows: Value = serde_json::from_slice(&out.stdout).expect("ls --json");
        for (label, name, _) in &files {
            assert!(rows["segments"].as_array().unwrap().iter().any(|r| r["name"] == name.as_str()), "{label} listed");
        }
        let out = shmkit(&["ls", "--all"]);
        assert!(out.status.success() && !String::from_utf8_lossy(&out.stdout).contains('\x1b'), "no escapes");
        for (label, name, bytes) in &files {
            let ok = shmkit::segment::header::validate(bytes, bytes.len() as u64).is_ok();
            for args in [&["inspect", name.as_str()][..], &["inspect", "--json", name]] {
                let out = shmkit(args);
                let err = stderr(&out);
                assert!(!err.contains("panicked") && !err.contains('\x1b'), "{label} {args:?}: {err}");
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(!text.contains('\x1b'), "{label} {args:?}: escape sequences printed: {text}");
                // A valid header may still front a corrupt control block (kind=value over a
                // bytes file): that is exit 2 too. A bad header always is.
                let code = out.status.code();
                assert!(code == Some(0) || code == Some(2), "{label} {args:?}: {code:?} {err}");
                assert!(ok || code == Some(2), "{label} {args:?}: a bad header is exit 2: {err}");
                assert!(label != "valid" || code == Some(0), "{label} {args:?}: {err}");
                if code == Some(2) {
                    assert_eq!(err.lines().count(), 1, "{label} {args:?}: one line: {err}");
                }
                if args[1] == "--json" {
                    let v: Value = serde_json::from_slice(&out.stdout).expect("inspect --json prints JSON");
                    assert_eq!(v["error"].is_string(), code == Some(2), "{label}: {v}");
                }
            }
            // Every case with the magic is a shmkit file (maybe corrupt): rm removes it.
            let out = shmkit(&["rm", name]);
            let err = stderr(&out);
            assert!(!err.contains("panicked"), "{label} rm: {err}");
            let has_magic = bytes.len() >= 8 && bytes[..8] == shmkit::segment::header::MAGIC;
            assert_eq!(out.status.success(), has_magic, "{label} rm: {err}");
            assert_eq!(exists(name), !has_magic, "{label}: rm removes exactly the shmkit files");
        }
    });
    cleanup();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

/// Every word of the meta block of a queue, byte queue, dict and list (control-block bytes
/// 0..256) set to 0 and to all ones, one at a time: `shmkit inspect` (and `--json`) either
/// shows the segment (a word the summary does not depend on) or refuses it with exit 2 —
/// never a panic, another code, or a hang.
#[test]
fn hostile_meta_words_never_panic_inspect() {
    let _serial = common::serial();
    let queue = shmkit::channel::Queue::<u64>::create(None, 4).unwrap();
    let bytes = shmkit::channel::ByteQueue::create(None, 4, 32).unwrap();
    let dict = shmkit::SharedDict::<str, u64>::create(None, 16).unwrap();
    let list = shmkit::SharedList::<u64>::create(None, 8).unwrap();
    let names = [queue.name(), bytes.name(), dict.name(), list.name()].map(|n| n.unwrap().to_owned());
    for name in &names {
        let file = std::fs::OpenOptions::new().read(true).write(true).open(format!("/dev/shm{name}")).unwrap();
        for word in 0..32u64 {
            let at = HEADER_SIZE as u64 + word * 8;
            let mut orig = [0u8; 8];
            file.read_exact_at(&mut orig, at).unwrap();
            for v in [0u64, u64::MAX] {
                file.write_at(&v.to_ne_bytes(), at).unwrap();
                for args in [&["inspect", name.as_str()][..], &["inspect", "--json", name.as_str()][..]] {
                    let out = shmkit(args);
                    let err = stderr(&out);
                    let what = format!("{args:?} with control word {word} = {v:#x}");
                    assert!(!err.contains("panicked"), "{what}: {err}");
                    assert!(matches!(out.status.code(), Some(0 | 2)), "{what}: {:?} {err}", out.status);
                }
            }
            file.write_at(&orig, at).unwrap();
        }
    }
}
