//! `shmkit inspect NAME`: the full header and a per-kind summary.

use std::time::Duration;

use shmkit::segment::{HeaderInfo, Kind};
use shmkit::{Element, SegmentOptions, SharedArray, SharedAtomic, SharedValue};

use super::json::{Json, utc};
use super::{Args, CliError};

const WAIT: Duration = Duration::from_secs(1);
const FIRST: usize = 8;

/// `shmkit inspect [--json] NAME`.
pub fn run(mut args: Args) -> Result<(), CliError> {
    let json = args.flag("json");
    let name = args.next_positional().ok_or_else(|| CliError::Usage("inspect needs a segment name".into()))?;
    args.finish()?;
    // Liveness before we map it ourselves.
    let stale = shmkit::segment::is_stale(&name).map_err(|e| CliError::Usage(e.to_string()))?;
    let opts = SegmentOptions::new().open_timeout(WAIT);
    let seg = opts.open_any(&name).map_err(|e| CliError::Usage(e.to_string()))?;
    let h = seg.header().cloned().ok_or_else(|| CliError::Usage(format!("{name} has no shmkit header")))?;
    drop(seg);
    let summary = summarize(&opts, &name, &h);
    if json {
        let mut pairs = vec![
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
    for (k, v) in &summary {
        println!("  {:<16} {}", k.replace('_', " "), v.text());
    }
    Ok(())
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

fn array<T: AsF64>(ctx: &Ctx<'_>) -> Summary {
    let (opts, name) = (ctx.opts, ctx.name);
    let a = match SharedArray::<T>::open_with(opts, name) {
        Ok(a) => a,
        Err(e) => return vec![("error".into(), Field::Text(e.to_string()))],
    };
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
    out
}

fn value<T: AsF64>(ctx: &Ctx<'_>) -> Summary {
    match SharedValue::<T>::open(ctx.name).map(|v| v.lock_timeout(WAIT).map(|g| *g)) {
        Ok(Ok(x)) => vec![("value".into(), Field::Num(x.as_f64()))],
        Ok(Err(e)) => vec![("value".into(), Field::Text(format!("not read: {e}")))],
        Err(e) => vec![("error".into(), Field::Text(e.to_string()))],
    }
}

fn atomic<T: AsF64 + shmkit::shared::AtomicElement>(name: &str, load: fn(&T::Atomic) -> f64) -> Summary {
    match SharedAtomic::<T>::open(name) {
        Ok(a) => vec![("value".into(), Field::Num(load(a.atomic())))],
        Err(e) => vec![("error".into(), Field::Text(e.to_string()))],
    }
}

fn queue<T: AsF64>(ctx: &Ctx<'_>) -> Summary {
    match shmkit::channel::Queue::<T>::open(ctx.name) {
        Ok(q) => queue_fields(q.capacity(), q.len(), q.is_closed(), q.abandoned()),
        Err(e) => vec![("error".into(), Field::Text(e.to_string()))],
    }
}

fn queue_fields(capacity: usize, len: usize, closed: bool, abandoned: u64) -> Summary {
    vec![
        ("capacity".into(), Field::Num(capacity as f64)),
        ("occupancy".into(), Field::Num(len as f64)),
        ("closed".into(), Field::Text(closed.to_string())),
        ("abandoned".into(), Field::Num(abandoned as f64)),
    ]
}

fn byte_queue(name: &str) -> Summary {
    match shmkit::channel::ByteQueue::open(name) {
        Ok(q) => queue_fields(q.capacity(), q.len(), q.is_closed(), q.abandoned()),
        // Pipes are two rings in one segment of the same kind.
        Err(_) => vec![("summary".into(), Field::Text("a pipe (two byte rings); no summary".into()))],
    }
}

fn dict<V: AsF64>(ctx: &Ctx<'_>) -> Summary {
    use shmkit::SharedDict;
    fn fields<K: shmkit::manager::DictKey + ?Sized, V: Element>(d: &SharedDict<K, V>, key: &str) -> Summary {
        let len = d.len().map_or_else(|e| Field::Text(format!("not read: {e}")), |n| Field::Num(n as f64));
        vec![
            ("key type".into(), Field::Text(key.into())),
            ("capacity".into(), Field::Num(d.capacity() as f64)),
            ("len".into(), len),
        ]
    }
    if let Ok(d) = SharedDict::<str, V>::open(ctx.name) {
        return fields(&d, "str");
    }
    macro_rules! keys {
        ($($k:ty),*) => {$(
            if let Ok(d) = SharedDict::<$k, V>::open(ctx.name) {
                return fields(&d, stringify!($k));
            }
        )*};
    }
    keys!(u64, i64, u32, i32, usize, u16, i16, u8, i8, [u8]);
    vec![("summary".into(), Field::Text("a dict with a key type this tool does not know".into()))]
}

fn list<T: AsF64>(ctx: &Ctx<'_>) -> Summary {
    match shmkit::SharedList::<T>::open(ctx.name) {
        Ok(l) => vec![
            ("capacity".into(), Field::Num(l.capacity() as f64)),
            ("len".into(), l.len().map_or_else(|e| Field::Text(format!("not read: {e}")), |n| Field::Num(n as f64))),
        ],
        Err(e) => vec![("error".into(), Field::Text(e.to_string()))],
    }
}

macro_rules! by_type {
    ($elem:expr, $f:ident, $ctx:expr; $($t:ty),*) => {
        match $elem {
            $(n if n == <$t as Element>::TYPE_NAME => Some($f::<$t>($ctx)),)*
            _ => None,
        }
    };
}

fn summarize(opts: &SegmentOptions, name: &str, h: &HeaderInfo) -> Summary {
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
        vec![("summary".into(), Field::Text(format!("no {} summary for element type {elem}", h.kind)))]
    })
}
