//! `shmkit inspect NAME`: the full header and a per-kind summary.

use std::time::Duration;

use clap::Args;
use serde::Serialize;
use serde_json::Value as Number;
use shmkit::segment::{HeaderInfo, Kind};
use shmkit::{Element, SegmentOptions, SharedArray, SharedAtomic, SharedValue};

use crate::report::{self, SegmentInfo, human_bytes, utc};
use crate::segments::{exit_code, parse_name};
use crate::{CliError, printable};

const WAIT: Duration = Duration::from_secs(1);
const FIRST: usize = 8;

/// `shmkit inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Print JSON (schema 1).
    #[arg(long)]
    json: bool,
    /// The segment's name, with or without the leading `/` (`--` before a name that starts with `-`).
    #[arg(value_parser = parse_name)]
    name: String,
}

/// `inspect --json`: the segment (the fields `ls` lists), its summary, or why it is bad.
#[derive(Serialize, Debug)]
struct Inspection {
    segment: SegmentInfo,
    summary: Option<Summary>,
    error: Option<String>,
}

/// `shmkit inspect [--json] NAME`.
///
/// A segment that is not a readable shmkit segment (a special or foreign file, a bad
/// header, a corrupt control block) is an error: one line on stderr, exit code 2 (1 when a
/// system call failed, e.g. no permission), and with `--json` the document with `error` set
/// on stdout (with the header fields when the header is valid).
pub fn run(args: &InspectArgs) -> Result<(), CliError> {
    let name = args.name.as_str();
    // Liveness (and the header, read without mapping) before we map it ourselves.
    let status = shmkit::segment::status(name).map_err(|e| bad(args.json, None, exit_code(&e), e.to_string()))?;
    let info = SegmentInfo::of(&status);
    let opts = SegmentOptions::new().open_timeout(WAIT);
    let h = match opts.open_any(name) {
        Ok(seg) => seg.header().cloned(),
        Err(e) => return Err(bad(args.json, Some(info), exit_code(&e), e.to_string())),
    };
    let Some(h) = h else { return Err(bad(args.json, Some(info), 2, format!("{name} has no shmkit header"))) };
    let summary = match summarize(&opts, name, &h) {
        Ok(summary) => summary,
        Err(message) => return Err(bad(args.json, Some(info), 2, message)),
    };
    if args.json {
        report::print(&Inspection { segment: info, summary: Some(summary), error: None });
        return Ok(());
    }
    let mapped = match info.mapped {
        Some(true) => "yes",
        Some(false) => "no (stale: shmkit gc removes it)",
        None => "unknown",
    };
    println!("{name}");
    println!("  format version   {}", h.version);
    println!("  kind             {}", h.kind);
    println!("  element type     {} (size {}, align {})", printable(&h.elem.name), h.elem.size, h.elem.align);
    println!("  length           {} elements", h.elem_count);
    println!("  payload          {} at offset {}", human_bytes(h.payload_len), h.payload_offset);
    println!("  size             {} ({} bytes)", human_bytes(status.size), status.size);
    println!("  creator pid      {} (informational: pids are reused)", h.creator_pid);
    println!("  created          {}", utc(h.created_unix_ns));
    println!("  mapped by others {mapped}");
    for (k, v) in summary.lines() {
        println!("  {k:<16} {}", printable(&v));
    }
    Ok(())
}

/// The error for a bad segment; with `--json`, the document with `error` goes to stdout first.
fn bad(json: bool, segment: Option<SegmentInfo>, code: u8, message: String) -> CliError {
    if json {
        #[derive(Serialize)]
        struct Failed<'a> {
            segment: Option<SegmentInfo>,
            summary: Option<Summary>,
            error: &'a str,
        }
        report::print(&Failed { segment, summary: None, error: &message });
    }
    if code == 2 { CliError::Bad(message) } else { CliError::Failed(message) }
}

/// What `inspect` shows beyond the header, by kind; absent fields do not apply to the kind.
/// Numbers are JSON numbers in the element's own type (integers stay integers).
#[derive(Serialize, Debug, Default)]
struct Summary {
    /// Arrays: the shape (C order), as Rust's `shape()` and numpy's `.shape`.
    #[serde(skip_serializing_if = "Option::is_none")]
    shape: Option<Vec<u64>>,
    /// Arrays: the claim table.
    #[serde(skip_serializing_if = "Option::is_none")]
    claims: Option<Claims>,
    /// Arrays: the first elements, the smallest and the largest.
    #[serde(skip_serializing_if = "Option::is_none")]
    first: Option<Vec<Number>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max: Option<Number>,
    /// Values and atomics: the value.
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Number>,
    /// Dicts: the key type.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_type: Option<String>,
    /// Queues, dicts, lists: slots.
    #[serde(skip_serializing_if = "Option::is_none")]
    capacity: Option<u64>,
    /// Queues, dicts, lists: entries held.
    #[serde(skip_serializing_if = "Option::is_none")]
    len: Option<u64>,
    /// Queues: closed by a producer.
    #[serde(skip_serializing_if = "Option::is_none")]
    closed: Option<bool>,
    /// Queues: messages abandoned by a process that died mid-operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    abandoned: Option<u64>,
    /// What could not be read now (a lock held past the wait), or why there is no summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

/// Slots of a claim table.
#[derive(Serialize, Debug, Clone, Copy)]
struct Claims {
    used: u64,
    capacity: u64,
}

impl Summary {
    /// `(label, text)` for the human output.
    fn lines(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut add = |k: &'static str, v: Option<String>| {
            if let Some(v) = v {
                out.push((k, v));
            }
        };
        add(
            "shape",
            self.shape.as_ref().map(|d| format!("({})", d.iter().map(u64::to_string).collect::<Vec<_>>().join(", "))),
        );
        add("claims", self.claims.map(|c| format!("{} of {} slots in use", c.used, c.capacity)));
        add(
            "first",
            self.first
                .as_ref()
                .map(|v| format!("[{}]", v.iter().map(Number::to_string).collect::<Vec<_>>().join(", "))),
        );
        add("min", self.min.as_ref().map(Number::to_string));
        add("max", self.max.as_ref().map(Number::to_string));
        add("value", self.value.as_ref().map(Number::to_string));
        add("key type", self.key_type.clone());
        add("capacity", self.capacity.map(|n| n.to_string()));
        add("len", self.len.map(|n| n.to_string()));
        add("closed", self.closed.map(|b| b.to_string()));
        add("abandoned", self.abandoned.map(|n| n.to_string()));
        add("note", self.note.clone());
        out
    }
}

/// A summary, or why the segment's kind-specific structure cannot be read (it is corrupt).
type Summarized = Result<Summary, String>;

/// An element `inspect` can summarize: ordered, and a JSON number.
trait Num: Element + PartialOrd + Serialize {}
impl<T: Element + PartialOrd + Serialize> Num for T {}

/// `x` as a JSON number (`null` for NaN and infinities).
fn num<T: Serialize>(x: T) -> Number {
    serde_json::to_value(x).unwrap_or(Number::Null)
}

/// What a summarizer needs.
struct Ctx<'a> {
    opts: &'a SegmentOptions,
    name: &'a str,
}

fn array<T: Num>(ctx: &Ctx<'_>) -> Summarized {
    let a = SharedArray::<T>::open_with(ctx.opts, ctx.name).map_err(|e| e.to_string())?;
    let mut out = Summary { shape: Some(a.shape().iter().map(|&d| d as u64).collect()), ..Summary::default() };
    if let Ok((used, cap)) = a.claim_slots() {
        out.claims = Some(Claims { used: used as u64, capacity: cap as u64 });
    }
    match a.claim_timeout(.., WAIT) {
        Ok(all) => {
            out.first = Some(all.iter().take(FIRST).map(|&x| num(x)).collect());
            let (mut lo, mut hi) = (all[0], all[0]);
            for &x in all.iter() {
                if x < lo {
                    lo = x;
                }
                if x > hi {
                    hi = x;
                }
            }
            out.min = Some(num(lo));
            out.max = Some(num(hi));
        }
        Err(e) => out.note = Some(format!("contents not read: {e}")),
    }
    Ok(out)
}

fn value<T: Num>(ctx: &Ctx<'_>) -> Summarized {
    let v = SharedValue::<T>::open(ctx.name).map_err(|e| e.to_string())?;
    Ok(match v.lock_timeout(WAIT).map(|g| *g) {
        Ok(x) => Summary { value: Some(num(x)), ..Summary::default() },
        Err(e) => Summary { note: Some(format!("value not read: {e}")), ..Summary::default() },
    })
}

fn atomic<T: Num + shmkit::shared::AtomicElement>(name: &str, load: fn(&T::Atomic) -> Number) -> Summarized {
    let a = SharedAtomic::<T>::open(name).map_err(|e| e.to_string())?;
    Ok(Summary { value: Some(load(a.atomic())), ..Summary::default() })
}

fn queue<T: Num>(ctx: &Ctx<'_>) -> Summarized {
    let q = shmkit::channel::Queue::<T>::open(ctx.name).map_err(|e| e.to_string())?;
    Ok(queue_fields(q.capacity(), q.len(), q.is_closed(), q.abandoned()))
}

fn queue_fields(capacity: usize, len: usize, closed: bool, abandoned: u64) -> Summary {
    Summary {
        capacity: Some(capacity as u64),
        len: Some(len as u64),
        closed: Some(closed),
        abandoned: Some(abandoned),
        ..Summary::default()
    }
}

fn byte_queue(name: &str) -> Summarized {
    // Pipes hold another element type (`shmkit.pipe`): a failure here is a bad byte queue.
    let q = shmkit::channel::ByteQueue::open(name).map_err(|e| e.to_string())?;
    Ok(queue_fields(q.capacity(), q.len(), q.is_closed(), q.abandoned()))
}

/// `len` of a dict or list, or a note saying why it was not read.
fn with_len(mut out: Summary, len: Result<usize, shmkit::ManagerError>) -> Summary {
    match len {
        Ok(n) => out.len = Some(n as u64),
        Err(e) => out.note = Some(format!("len not read: {e}")),
    }
    out
}

fn dict<V: Num>(ctx: &Ctx<'_>) -> Summarized {
    use shmkit::SharedDict;
    use shmkit::manager::ManagerError;
    fn fields<K: shmkit::manager::DictKey + ?Sized, V: Element>(d: &SharedDict<K, V>, key: &str) -> Summary {
        let out = Summary { key_type: Some(key.into()), capacity: Some(d.capacity() as u64), ..Summary::default() };
        with_len(out, d.len())
    }
    // Each key type in turn: a wrong key type is the only error that says "try the next".
    macro_rules! keys {
        ($($k:ty),*) => {$(
            match SharedDict::<$k, V>::open(ctx.name) {
                Ok(d) => return Ok(fields(&d, stringify!($k))),
                Err(ManagerError::KeyTypeMismatch { .. }) => {}
                Err(e) => return Err(e.to_string()),
            }
        )*};
    }
    keys!(str, u64, i64, u32, i32, usize, u16, i16, u8, i8, [u8]);
    Ok(Summary { note: Some("a dict with a key type this tool does not know".into()), ..Summary::default() })
}

fn list<T: Num>(ctx: &Ctx<'_>) -> Summarized {
    let l = shmkit::SharedList::<T>::open(ctx.name).map_err(|e| e.to_string())?;
    Ok(with_len(Summary { capacity: Some(l.capacity() as u64), ..Summary::default() }, l.len()))
}

macro_rules! by_type {
    ($elem:expr, $f:ident, $ctx:expr; $($t:ty),*) => {
        match $elem {
            $(n if n == <$t as Element>::TYPE_NAME => Some($f::<$t>($ctx)),)*
            _ => None,
        }
    };
}

fn summarize(opts: &SegmentOptions, name: &str, h: &HeaderInfo) -> Summarized {
    use std::sync::atomic::Ordering::SeqCst;
    let elem = h.elem.name.as_str();
    let ctx = &Ctx { opts, name };
    let typed = match h.kind {
        Kind::Array => by_type!(elem, array, ctx; u8, i8, u16, i16, u32, i32, u64, i64, usize, isize, f32, f64),
        Kind::Value => by_type!(elem, value, ctx; u8, i8, u16, i16, u32, i32, u64, i64, usize, isize, f32, f64),
        Kind::Queue if elem == "shmkit.bytes" => Some(byte_queue(name)),
        Kind::Queue => by_type!(elem, queue, ctx; u8, i8, u16, i16, u32, i32, u64, i64, usize, isize, f32, f64),
        Kind::Dict => by_type!(elem, dict, ctx; u8, i8, u16, i16, u32, i32, u64, i64, usize, isize, f32, f64),
        Kind::List => by_type!(elem, list, ctx; u8, i8, u16, i16, u32, i32, u64, i64, usize, isize, f32, f64),
        Kind::Atomic => match elem {
            "u32" => Some(atomic::<u32>(name, |a| num(a.load(SeqCst)))),
            "i32" => Some(atomic::<i32>(name, |a| num(a.load(SeqCst)))),
            "u64" => Some(atomic::<u64>(name, |a| num(a.load(SeqCst)))),
            "i64" => Some(atomic::<i64>(name, |a| num(a.load(SeqCst)))),
            "usize" => Some(atomic::<usize>(name, |a| num(a.load(SeqCst)))),
            _ => None,
        },
        _ => None,
    };
    typed.unwrap_or_else(|| {
        Ok(Summary { note: Some(format!("no {} summary for element type {elem}", h.kind)), ..Summary::default() })
    })
}
