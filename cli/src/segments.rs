//! `shmkit ls`, `rm` and `gc`: list, remove and collect segments in `/dev/shm`.

use shmkit::segment::{self, FileKind, SegmentStatus};
use shmkit::{Segment, SegmentError};

use super::json::{Json, utc};
use super::{Args, CliError, printable};

fn status_json(s: &SegmentStatus) -> Json {
    let h = s.header.as_ref();
    Json::obj([
        ("name", Json::Str(s.name.clone())),
        ("shmkit", Json::Bool(s.is_shmkit)),
        ("kind", h.map_or(Json::Null, |h| Json::Str(h.kind.name().into()))),
        ("element_type", h.map_or(Json::Null, |h| Json::Str(h.elem.name.clone()))),
        ("length", h.map_or(Json::Null, |h| Json::Int(h.elem_count.into()))),
        ("bytes", Json::Int(s.size.into())),
        ("creator_pid", h.map_or(Json::Null, |h| Json::Int(h.creator_pid.into()))),
        ("created", h.map_or(Json::Null, |h| Json::Str(utc(h.created_unix_ns)))),
        ("mapped", s.stale.map_or(Json::Null, |st| Json::Bool(!st))),
        ("stale", s.stale.map_or(Json::Null, Json::Bool)),
        ("problem", s.problem.clone().map_or(Json::Null, Json::Str)),
    ])
}

/// `shmkit ls [--all] [--json]`.
pub fn ls(mut args: Args) -> Result<(), CliError> {
    let all = args.flag("all");
    let json = args.flag("json");
    args.finish()?;
    let rows: Vec<SegmentStatus> = segment::list()?.into_iter().filter(|s| all || s.is_shmkit).collect();
    if json {
        println!("{}", Json::Arr(rows.iter().map(status_json).collect()).render());
        return Ok(());
    }
    if rows.is_empty() {
        println!("no shmkit segments in /dev/shm{}", if all { "" } else { " (--all lists foreign files too)" });
        return Ok(());
    }
    println!(
        "{:<44} {:<7} {:<8} {:>12} {:>12} {:>8} {:<20} STATE",
        "NAME", "KIND", "TYPE", "LENGTH", "BYTES", "PID", "CREATED"
    );
    for s in &rows {
        let state = match (s.stale, s.is_shmkit) {
            (Some(false), _) => "mapped",
            (Some(true), true) => "stale",
            (Some(true), false) => "unmapped",
            (None, _) => "?",
        };
        let (kind, ty, len, pid, created) = match &s.header {
            Some(h) => (
                h.kind.name().to_owned(),
                h.elem.name.clone(),
                h.elem_count.to_string(),
                h.creator_pid.to_string(),
                utc(h.created_unix_ns),
            ),
            None if s.is_shmkit => ("?".into(), "?".into(), "-".into(), "-".into(), "-".into()),
            None => ("foreign".into(), "-".into(), "-".into(), "-".into(), "-".into()),
        };
        let note = s.problem.as_ref().map(|p| format!(" ({p})")).unwrap_or_default();
        println!(
            "{:<44} {:<7} {:<8} {:>12} {:>12} {:>8} {:<20} {state}{note}",
            s.name, kind, ty, len, s.size, pid, created
        );
    }
    Ok(())
}

/// `shmkit rm [--force] [--json] NAME...`.
pub fn rm(mut args: Args) -> Result<(), CliError> {
    let force = args.flag("force");
    let json = args.flag("json");
    let mut names = Vec::new();
    while let Some(n) = args.next_positional() {
        names.push(n);
    }
    args.finish()?;
    if names.is_empty() {
        return Err(CliError::Usage("rm needs at least one segment name".into()));
    }
    let mut results = Vec::new();
    let mut failures = 0;
    for name in &names {
        let outcome = remove_one(name, force);
        let (removed, message) = match &outcome {
            Ok(()) => (true, None),
            Err(m) => {
                failures += 1;
                (false, Some(m.clone()))
            }
        };
        if json {
            results.push(Json::obj([
                ("name", Json::Str(name.clone())),
                ("removed", Json::Bool(removed)),
                ("error", message.map_or(Json::Null, Json::Str)),
            ]));
        } else {
            match outcome {
                Ok(()) => println!("removed {name}"),
                Err(m) => eprintln!("shmkit: {}", printable(&m)),
            }
        }
    }
    if json {
        println!("{}", Json::Arr(results).render());
    }
    if failures > 0 {
        return Err(CliError::Failed(format!("{failures} of {} segments not removed", names.len())));
    }
    Ok(())
}

/// Remove one name. Without `--force` only a shmkit segment that no process maps; with it
/// any file (but never a directory).
fn remove_one(name: &str, force: bool) -> Result<(), String> {
    let status = match segment::status(name) {
        Ok(status) => status,
        Err(e @ SegmentError::SpecialFile { what: FileKind::Directory, .. }) => {
            return Err(format!("{e}; shmkit never removes directories"));
        }
        Err(SegmentError::SpecialFile { .. }) if force => return unlink(name),
        Err(e @ SegmentError::SpecialFile { .. }) => return Err(format!("{e}; --force removes it anyway")),
        Err(e) => return Err(e.to_string()),
    };
    if force {
        return unlink(name);
    }
    if !status.is_shmkit {
        let what = if status.size == 0 {
            "an empty file, not a shmkit segment (or its creator has not sized it yet)".to_owned()
        } else {
            format!(
                "not a shmkit segment: a {}-byte file without the shmkit header (plain shared memory?)",
                status.size
            )
        };
        return Err(format!("{name} is {what}; --force removes it anyway"));
    }
    if status.stale != Some(true) {
        return Err(format!(
            "{name} is mapped by a live process; stop it first, or use --force (its mappings stay valid)"
        ));
    }
    match segment::remove_if_stale(name) {
        Ok(true) => Ok(()),
        Ok(false) => {
            Err(format!("{name} changed while being removed (a process mapped it, or the name was reused); retry"))
        }
        Err(e) => Err(e.to_string()),
    }
}

fn unlink(name: &str) -> Result<(), String> {
    Segment::unlink(name).map_err(|e| e.to_string())
}

/// `shmkit gc [--dry-run] [--json]`.
pub fn gc(mut args: Args) -> Result<(), CliError> {
    let dry = args.flag("dry-run");
    let json = args.flag("json");
    args.finish()?;
    let names: Vec<String> = if dry {
        segment::list()?.into_iter().filter(|s| s.is_shmkit && s.stale == Some(true)).map(|s| s.name).collect()
    } else {
        segment::gc()?
    };
    if json {
        let key = if dry { "would_remove" } else { "removed" };
        println!("{}", Json::obj([(key, Json::Arr(names.into_iter().map(Json::Str).collect()))]).render());
        return Ok(());
    }
    let verb = if dry { "would remove" } else { "removed" };
    if names.is_empty() {
        println!("no stale shmkit segments");
    }
    for n in &names {
        println!("{verb} {n}");
    }
    Ok(())
}
