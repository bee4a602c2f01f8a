//! `shmkit inspect NAME`: the full header and a per-kind summary.

use std::time::Duration;

use shmkit::segment::{HeaderInfo, Kind};
use shmkit::{Element, SegmentOptions, SharedArray, SharedAtomic, SharedValue};

use super::json::{Json, utc};
use super::{Args, CliError};

const WAIT: Duration = Duration::from_secs(1);
const FIRST: usize = 8;

/// `shmkit inspect [--json] NAME`.
///
/// A segment that is not a readable shmkit segment (a special or foreign file, a bad
/// header, a corrupt control block) is an error: one line on stderr, exit code 2, and with
/// `--json` an object with a top-level `error` on stdout (with the header when it is valid).
pub fn run(mut args: Args) -> Result<(), CliError> {
    let json = args.flag("json");
    let name = args.next_positional().ok_or_else(|| CliError::Usage("inspect needs a segment name".into()))?;
    args.finish()?;
    let name_only = || vec![("name", Json::Str(name.clone()))];
    // Liveness before we map it ourselves.
    let stale = shmkit::segment::is_stale(&name).map_err(|e| bad(json, name_only(), e.to_string()))?;
    let opts = SegmentOptions::new().open_timeout(WAIT);
    let seg = opts.open_any(&name).map_err(|e| bad(json, name_only(), e.to_string()))?;
    let h = seg.header().cloned().ok_or_else(|| bad(json, name_only(), format!("{name} has no shmkit header")))?;
    drop(seg);
    let pairs = vec![
        ("name", Json::Str(name.clone())),
        ("format_version", Json::Int(h.version.into())),
        ("kind", Json::Str(h.kind.name().into())),
        ("element_type", Json::Str(h.elem.name.clone())),
        ("element_size", Json::Int(h.elem.size.into())),
        ("element_align", Json::Int(h.elem.align.into())),
        ("length", Json::Int(h.elem_count.into())),
        ("payload_offset", Json::Int(h.payload_offset.into())),
        ("payload_bytes", Json::Int(h.payload_len.into())),
        ("bytes", Json::Int(h.total_len().into())),
        ("creator_pid", Json::Int(h.creator_pid.into())),
        ("created", Json::Str(utc(h.created_unix_ns))),
        ("mapped_by_others", Json::Bool(!stale)),
    ];
    let summary = summarize(&opts, &name, &h);
    if json {
        let Ok(summary) = summary else { return Err(bad(json, pairs, summary.err().unwrap_or_default())) };
        let mut pairs = pairs;
        pairs.push(("summary", Json::obj(summary.iter().map(|(k, v)| (k.clone(), v.json())))));
        println!("{}", Json::obj(pairs).render());
        return Ok(());
    }
    println!("{name}");
    println!("  format version   {}", h.version);
    println!("  kind             {}", h.kind);
    println!("  element type     {} (size {}, align {})", h.elem.name, h.elem.size, h.elem.align);
    println!("  length           {} elements", h.elem_count);
    println!("  payload          {} bytes at offset {}", h.payload_len, h.payload_offset);
    println!("  total            {} bytes", h.total_len());
    println!("  creator pid      {} (informational: pids are reused)", h.creator_pid);
    println!("  created          {}", utc(h.created_unix_ns));
    println!("  mapped by others {}", if stale { "no (stale: shmkit gc removes it)" } else { "yes" });
    for (k, v) in &summary.map_err(CliError::Usage)? {
        println!("  {:<16} {}", k.replace('_', " "), v.text());
    }
    Ok(())
}

/// The error for a bad segment; with `--json`, `fields` and the `error` go to stdout first.
fn bad(json: bool, mut fields: Vec<(&str, Json)>, message: String) -> CliError {
    if json {
        fields.push(("error", Json::Str(message.clone())));
        println!("{}", Json::obj(fields).render());
    }
    CliError::Usage(message)
}

/// A summary field: text for people, JSON for tools.
enum Field {
    Text(String),
    Nums(Vec<f64>),
    Num(f64),
}

impl Field {
    fn text(&self) -> String {
        match self {
            Field::Text(s) => s.clone(),
            Field::Num(x) => format!("{x}"),
            Field::Nums(v) => format!("{v:?}"),
        }
    }

    fn json(&self) -> Json {
        match self {
            Field::Text(s) => Json::Str(s.clone()),
            Field::Num(x) => Json::Num(*x),
            Field::Nums(v) => Json::Arr(v.iter().map(|x| Json::Num(*x)).collect()),
        }
    }
}

type Summary = Vec<(String, Field)>;

/// A summary, or why the segment's kind-specific structure cannot be read (it is corrupt).
type Summarized = Result<Summary, String>;

trait AsF64: Element + PartialOrd {
    fn as_f64(self) -> f64;
}

macro_rules! as_f64 {
    ($($t:ty),*) => {$(impl AsF64 for $t { fn as_f64(self) -> f64 { self as f64 } })*};
}
as_f64!(u8, i8, u16, i16, u32, i32, u64, i64, usize, isize, f32, f64);

/// What a summarizer needs.
struct Ctx<'a> {
    opts: &'a SegmentOptions,
    name: &'a str,
}

fn array<T: AsF64>(ctx: &Ctx<'_>) -> Summarized {
    let a = SharedArray::<T>::open_with(ctx.opts, ctx.name).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    if let Ok((used, cap)) = a.claim_slots() {
        out.push(("claims".into(), Field::Text(format!("{used} of {cap} slots in use"))));
    }
    match a.claim_timeout(.., WAIT) {
        Ok(all) => {
            out.push(("first".into(), Field::Nums(all.iter().take(FIRST).map(|x| x.as_f64()).collect())));
            let (mut lo, mut hi) = (all[0], all[0]);
            for &x in all.iter() {
                if x < lo {
                    lo = x;
                }
                if x > hi {
                    hi = x;
                }
            }
            out.push(("min".into(), Field::Num(lo.as_f64())));
            out.push(("max".into(), Field::Num(hi.as_f64())));
        }
        Err(e) => out.push(("contents".into(), Field::Text(format!("not read: {e}")))),
    }
    Ok(out)
}

fn value<T: AsF64>(ctx: &Ctx<'_>) -> Summarized {
    let v = SharedValue::<T>::open(ctx.name).map_err(|e| e.to_string())?;
    Ok(match v.lock_timeout(WAIT).map(|g| *g) {
        Ok(x) => vec![("value".into(), Field::Num(x.as_f64()))],
        Err(e) => vec![("value".into(), Field::Text(format!("not read: {e}")))],
    })
}

fn atomic<T: AsF64 + shmkit::shared::AtomicElement>(name: &str, load: fn(&T::Atomic) -> f64) -> Summarized {
    let a = SharedAtomic::<T>::open(name).map_err(|e| e.to_string())?;
    Ok(vec![("value".into(), Field::Num(load(a.atomic())))])
}

fn queue<T: AsF64>(ctx: &Ctx<'_>) -> Summarized {
    let q = shmkit::channel::Queue::<T>::open(ctx.name).map_err(|e| e.to_string())?;
    Ok(queue_fields(q.capacity(), q.len(), q.is_closed(), q.abandoned()))
}

fn queue_fields(capacity: usize, len: usize, closed: bool, abandoned: u64) -> Summary {
    vec![
        ("capacity".into(), Field::Num(capacity as f64)),
        ("occupancy".into(), Field::Num(len as f64)),
        ("closed".into(), Field::Text(closed.to_string())),
        ("abandoned".into(), Field::Num(abandoned as f64)),
    ]
}

fn byte_queue(name: &str) -> Summarized {
    // Pipes hold another element type (`shmkit.pipe`): a failure here is a bad byte queue.
    let q = shmkit::channel::ByteQueue::open(name).map_err(|e| e.to_string())?;
    Ok(queue_fields(q.capacity(), q.len(), q.is_closed(), q.abandoned()))
}

fn dict<V: AsF64>(ctx: &Ctx<'_>) -> Summarized {
    use shmkit::SharedDict;
    use shmkit::manager::ManagerError;
    fn fields<K: shmkit::manager::DictKey + ?Sized, V: Element>(d: &SharedDict<K, V>, key: &str) -> Summary {
        let len = d.len().map_or_else(|e| Field::Text(format!("not read: {e}")), |n| Field::Num(n as f64));
        vec![
            ("key type".into(), Field::Text(key.into())),
            ("capacity".into(), Field::Num(d.capacity() as f64)),
            ("len".into(), len),
        ]
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
    Ok(vec![("summary".into(), Field::Text("a dict with a key type this tool does not know".into()))])
}

fn list<T: AsF64>(ctx: &Ctx<'_>) -> Summarized {
    let l = shmkit::SharedList::<T>::open(ctx.name).map_err(|e| e.to_string())?;
    Ok(vec![
        ("capacity".into(), Field::Num(l.capacity() as f64)),
        ("len".into(), l.len().map_or_else(|e| Field::Text(format!("not read: {e}")), |n| Field::Num(n as f64))),
    ])
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
            "u32" => Some(atomic::<u32>(name, |a| a.load(SeqCst) as f64)),
            "i32" => Some(atomic::<i32>(name, |a| a.load(SeqCst) as f64)),
            "u64" => Some(atomic::<u64>(name, |a| a.load(SeqCst) as f64)),
            "i64" => Some(atomic::<i64>(name, |a| a.load(SeqCst) as f64)),
            "usize" => Some(atomic::<usize>(name, |a| a.load(SeqCst) as f64)),
            _ => None,
        },
        _ => None,
    };
    typed.unwrap_or_else(|| {
        Ok(vec![("summary".into(), Field::Text(format!("no {} summary for element type {elem}", h.kind)))])
    })
}
