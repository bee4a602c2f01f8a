//! The JSON output of every command (`--json`): `#[derive(Serialize)]` types, each document
//! with a top-level `"schema"`, and the field names shared by `ls`, `inspect`, `rm` and `gc`.
//! Also the formatting helpers of the human-readable output.

use serde::Serialize;
use shmkit::segment::SegmentStatus;

/// The version of the JSON documents: bumped when a field changes meaning or disappears
/// (new fields may appear without a bump).
pub const SCHEMA: u32 = 1;

/// Print `doc` as one line of JSON on stdout, with `"schema"` first.
pub fn print<T: Serialize>(doc: &T) {
    #[derive(Serialize)]
    struct Versioned<'a, T> {
        schema: u32,
        #[serde(flatten)]
        doc: &'a T,
    }
    match serde_json::to_string(&Versioned { schema: SCHEMA, doc }) {
        Ok(line) => println!("{line}"),
        // Only a map with non-string keys fails, and these types have none.
        Err(e) => eprintln!("shmkit: cannot write JSON: {e}"),
    }
}

/// One file in `/dev/shm`, as `ls` lists it and `inspect` shows it (the same fields). Header
/// fields are `null` when the file has no valid shmkit header.
#[derive(Serialize, Debug)]
pub struct SegmentInfo {
    /// The name, with exactly one leading `/` (as `shm_open` takes it).
    pub name: String,
    /// Whether the file is a shmkit segment (starts with the shmkit magic).
    pub shmkit: bool,
    /// `array`, `value`, `atomic`, `queue`, `dict`, `list`, `bytes`, …
    pub kind: Option<String>,
    /// The element type's name (`f64`, `u8`, `shmkit.bytes`, …).
    pub element_type: Option<String>,
    /// Element size and alignment in bytes.
    pub element_size: Option<u64>,
    pub element_align: Option<u32>,
    /// Number of elements.
    pub length: Option<u64>,
    /// The file's size in bytes.
    pub bytes: u64,
    /// Where the payload starts and how long it is, in bytes.
    pub payload_offset: Option<u64>,
    pub payload_bytes: Option<u64>,
    /// The header's format version.
    pub format_version: Option<u32>,
    /// The creator's pid (informational: pids are reused).
    pub creator_pid: Option<u32>,
    /// Creation time, UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub created: Option<String>,
    /// Whether a live process (other than this one) maps it; `null` when it could not be checked.
    pub mapped: Option<bool>,
    /// Why the header was rejected, if it was.
    pub problem: Option<String>,
}

impl SegmentInfo {
    /// The fields of `s`.
    pub fn of(s: &SegmentStatus) -> Self {
        let h = s.header.as_ref();
        SegmentInfo {
            name: s.name.clone(),
            shmkit: s.is_shmkit,
            kind: h.map(|h| h.kind.name().to_owned()),
            element_type: h.map(|h| h.elem.name.clone()),
            element_size: h.map(|h| h.elem.size),
            element_align: h.map(|h| h.elem.align),
            length: h.map(|h| h.elem_count),
            bytes: s.size,
            payload_offset: h.map(|h| h.payload_offset),
            payload_bytes: h.map(|h| h.payload_len),
            format_version: h.map(|h| h.version),
            creator_pid: h.map(|h| h.creator_pid),
            created: h.map(|h| utc(h.created_unix_ns)),
            mapped: s.stale.map(|stale| !stale),
            problem: s.problem.clone(),
        }
    }
}

/// What `rm` and `gc` did (or, with `dry_run`, would do) to each name.
#[derive(Serialize, Debug)]
pub struct Removal {
    /// `rm` or `gc`.
    pub command: &'static str,
    /// Whether this was a dry run: nothing was removed.
    pub dry_run: bool,
    /// One entry per name.
    pub results: Vec<Outcome>,
}

/// What happened to one name.
#[derive(Serialize, Debug)]
pub struct Outcome {
    /// The name, with exactly one leading `/`.
    pub name: String,
    /// `removed`, `would_remove` (dry run) or `kept`.
    pub action: Action,
    /// 0, or the exit code this name alone would give (1 refused or failed, 2 bad segment).
    pub exit_code: u8,
    /// Why it was kept.
    pub error: Option<String>,
}

/// What was done to one name.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Unlinked.
    Removed,
    /// A dry run: would be unlinked.
    WouldRemove,
    /// Left in place (see `error`).
    Kept,
}

/// One way of a `demo` race: the final count and the increments per second.
#[derive(Serialize, Debug)]
pub struct Rate {
    /// The counter at the end.
    #[serde(rename = "final")]
    pub final_count: u64,
    /// Increments (or updates) per second, all processes together.
    pub per_second: u64,
}

impl Rate {
    /// A race that ended at `final_count` after `seconds`, of `expected` increments.
    pub fn of(final_count: u64, seconds: f64, expected: u64) -> Self {
        Rate { final_count, per_second: (expected as f64 / seconds.max(1e-9)).round() as u64 }
    }
}

/// `512 B`, `4.0 KiB`, `1.5 MiB`, … (powers of 1024).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut x = n as f64 / 1024.0;
    let mut unit = 0;
    while x >= 1024.0 && unit + 1 < UNITS.len() {
        x /= 1024.0;
        unit += 1;
    }
    format!("{x:.1} {}", UNITS[unit])
}

/// `2026-11-24T01:02:03Z` from nanoseconds since the Unix epoch.
pub fn utc(unix_ns: u64) -> String {
    let secs = (unix_ns / 1_000_000_000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_795_000_000 * 1_000_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(4096), "4.0 KiB");
        assert_eq!(human_bytes(1536 * 1024), "1.5 MiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }
}
