//! `shmkit ls`, `rm` and `gc`: list, remove and collect segments in `/dev/shm`.

use clap::Args;
use shmkit::segment::{self, FileKind, SegmentStatus};
use shmkit::{Segment, SegmentError};

use crate::report::{self, Action, Outcome, Removal, SegmentInfo, human_bytes, utc};
use crate::{CliError, printable};

/// `shmkit ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// Also list files that are not shmkit segments (other programs' shared memory).
    #[arg(short, long)]
    all: bool,
    /// Print JSON (schema 1) instead of a table.
    #[arg(long)]
    json: bool,
}

/// `shmkit rm`.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Remove even a segment a live process maps (its mappings stay valid), or a file that is
    /// not a shmkit segment. Never a directory.
    #[arg(short, long)]
    force: bool,
    /// Say what would be removed, and remove nothing.
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Print JSON (schema 1).
    #[arg(long)]
    json: bool,
    /// Segment names, with or without the leading `/` (`--` before a name that starts with `-`).
    #[arg(required = true, value_parser = parse_name)]
    names: Vec<String>,
}

/// `shmkit gc`.
#[derive(Args, Debug)]
pub struct GcArgs {
    /// Say what would be removed, and remove nothing.
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Print JSON (schema 1).
    #[arg(long)]
    json: bool,
}

/// A segment name as given on the command line, normalised to exactly one leading `/`.
pub fn parse_name(name: &str) -> Result<String, String> {
    segment::name::normalize(name).map_err(|e| e.to_string())
}

/// The exit code of a segment error: 2 when the name is not a usable shmkit segment
/// (missing, special, foreign, empty, corrupt, another format), 1 when the operation
/// failed (permissions, no space, a system call).
pub fn exit_code(e: &SegmentError) -> u8 {
    match e {
        SegmentError::PermissionDenied { .. }
        | SegmentError::NoSpace { .. }
        | SegmentError::Locked { .. }
        | SegmentError::Io { .. } => 1,
        _ => 2,
    }
}

/// `shmkit ls [--all] [--json]`.
pub fn ls(args: &LsArgs) -> Result<(), CliError> {
    let rows: Vec<SegmentStatus> = segment::list()?.into_iter().filter(|s| args.all || s.is_shmkit).collect();
    if args.json {
        #[derive(serde::Serialize)]
        struct Listing {
            segments: Vec<SegmentInfo>,
        }
        report::print(&Listing { segments: rows.iter().map(SegmentInfo::of).collect() });
        return Ok(());
    }
    if rows.is_empty() {
        println!("no shmkit segments in /dev/shm{}", if args.all { "" } else { " (--all lists foreign files too)" });
        return Ok(());
    }
    println!(
        "{:<44} {:<7} {:<8} {:>12} {:>10} {:>8} {:<20} STATE",
        "NAME", "KIND", "TYPE", "LENGTH", "SIZE", "PID", "CREATED"
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
        let line = format!(
            "{:<44} {:<7} {:<8} {:>12} {:>10} {:>8} {:<20} {state}{note}",
            s.name,
            kind,
            ty,
            len,
            human_bytes(s.size),
            pid,
            created
        );
        println!("{}", printable(&line));
    }
    Ok(())
}

/// `shmkit rm [--force] [--dry-run] [--json] NAME...`: exit code the worst of the names'.
pub fn rm(args: &RmArgs) -> Result<(), CliError> {
    let results: Vec<Outcome> = args.names.iter().map(|name| remove_one(name, args.force, args.dry_run)).collect();
    finish(Removal { command: "rm", dry_run: args.dry_run, results }, args.json)
}

/// `shmkit gc [--dry-run] [--json]`.
pub fn gc(args: &GcArgs) -> Result<(), CliError> {
    let (names, action) = if args.dry_run {
        let stale = segment::list()?.into_iter().filter(|s| s.is_shmkit && s.stale == Some(true));
        (stale.map(|s| s.name).collect(), Action::WouldRemove)
    } else {
        (segment::gc()?, Action::Removed)
    };
    let results = names.into_iter().map(|name| Outcome { name, action, exit_code: 0, error: None }).collect();
    let removal = Removal { command: "gc", dry_run: args.dry_run, results };
    if !args.json && removal.results.is_empty() {
        println!("no stale shmkit segments");
    }
    finish(removal, args.json)
}

/// Print what `rm` or `gc` did, as JSON or one line per name (kept ones on stderr), and
/// return the worst exit code.
fn finish(removal: Removal, json: bool) -> Result<(), CliError> {
    let code = removal.results.iter().map(|o| o.exit_code).max().unwrap_or(0);
    if json {
        report::print(&removal);
    } else {
        for o in &removal.results {
            match (o.action, &o.error) {
                (Action::Removed, _) => println!("removed {}", o.name),
                (Action::WouldRemove, _) => println!("would remove {}", o.name),
                (Action::Kept, Some(e)) => eprintln!("shmkit: {}", printable(e)),
                (Action::Kept, None) => eprintln!("shmkit: kept {}", o.name),
            }
        }
    }
    if code == 0 { Ok(()) } else { Err(CliError::Reported(code)) }
}

/// Remove one name (or, with `dry_run`, check that it would be removed). Without `force`
/// only a shmkit segment that no process maps; with it any file (but never a directory).
fn remove_one(name: &str, force: bool, dry_run: bool) -> Outcome {
    let kept = |code: u8, error: String| Outcome {
        name: name.to_owned(),
        action: Action::Kept,
        exit_code: code,
        error: Some(error),
    };
    let done = || Outcome {
        name: name.to_owned(),
        action: if dry_run { Action::WouldRemove } else { Action::Removed },
        exit_code: 0,
        error: None,
    };
    let unlink = || match if dry_run { Ok(()) } else { Segment::unlink(name) } {
        Ok(()) => done(),
        Err(e) => kept(exit_code(&e), e.to_string()),
    };
    let status = match segment::status(name) {
        Ok(status) => status,
        Err(e @ SegmentError::SpecialFile { what: FileKind::Directory, .. }) => {
            return kept(2, format!("{e}; shmkit never removes directories"));
        }
        Err(SegmentError::SpecialFile { .. }) if force => return unlink(),
        Err(e @ SegmentError::SpecialFile { .. }) => return kept(2, format!("{e}; --force removes it anyway")),
        Err(e) => return kept(exit_code(&e), e.to_string()),
    };
    if force {
        return unlink();
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
        return kept(2, format!("{name} is {what}; --force removes it anyway"));
    }
    if status.stale != Some(true) {
        return kept(
            1,
            format!("{name} is mapped by a live process; stop it first, or use --force (its mappings stay valid)"),
        );
    }
    if dry_run {
        return done();
    }
    match segment::remove_if_stale(name) {
        Ok(true) => done(),
        Ok(false) => {
            kept(1, format!("{name} changed while being removed (a process mapped it, or the name was reused); retry"))
        }
        Err(e) => kept(exit_code(&e), e.to_string()),
    }
}
