//! A coverage-guided fuzz campaign on a process pool: a target with planted bugs (it crashes
//! with SIGSEGV on some inputs, aborts with a message on others, hangs on others, and has a
//! slow path), inputs generated and mutated in this process from a seed, and a coverage map
//! in shared memory that the workers update in place.
//!
//! ```text
//! cargo run --release --example fuzz_harness [-- --seed N --execs N --seconds S --workers N --out DIR]
//! ```
//!
//! - Every input runs in a worker through [`Pool::map_results_with`]: a crash or a hang fails
//!   only that input (pid, signal, how long it ran, the worker's last words on stderr); the
//!   worker is replaced and the rest of the batch runs on. Hangs are cut by a 50 ms timeout.
//! - The coverage map is a `SharedObject<[AtomicU32; 64]>`, one word per edge of the target. Workers
//!   `fetch_min` the input's id into each edge they pass, so after a batch each word holds
//!   the first input (by id) that reached it — the same whatever the timing. The parent reads
//!   the map and keeps, for every newly covered edge, the input that reached it first.
//! - Crashes and hangs are saved into the output directory (a fresh temporary directory by
//!   default), one `.bin` (the input) and one `.txt` (the error) per distinct bug.
//! - Deterministic from the seed: the same inputs are run, and the same counts, coverage,
//!   corpus and bugs (with the same first inputs) come out, whatever the order in which the
//!   workers finish (checked: seeds 1 and 7, three runs each, and again with three CPU hogs
//!   running). What is not: pids, times and rates, and which execution count each progress
//!   line (one a second) shows. Two things depend on the clock and can change the counts:
//!   the timeout is wall-clock time, so on a machine so loaded that an input that returns
//!   (the 3 ms slow path, or any input whose worker is descheduled) takes over 50 ms, that
//!   input is reported as a hang; and the `--seconds` cap (default 50) ends a slow run
//!   before the execution budget. The default budget (400,000 executions) takes about ten
//!   seconds on a loaded 2-core machine.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use shmkit::SharedObject;
use shmkit::pool::{ItemOptions, Pool, PoolError, TaskError};

/// Edges of the target (one coverage word each).
const EDGES: usize = 64;
/// Bytes of an input.
const LEN: usize = 24;
/// Inputs per batch.
const BATCH: usize = 8192;

/// One fuzz input: its id (for the coverage map) and its bytes.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct Input {
    id: u32,
    len: u32,
    data: [u8; LEN],
}

// ---------------------------------------------------------------- the workers' side

/// The coverage map: one word per edge.
type Map = SharedObject<[AtomicU32; EDGES]>;

/// The coverage map, mapped once per worker by the initializer.
static MAP: OnceLock<Map> = OnceLock::new();

fn open_map(name: [u8; 64]) {
    let len = name.iter().position(|&b| b == 0).unwrap_or(64);
    let name = std::str::from_utf8(&name[..len]).expect("map name");
    let _ = MAP.set(Map::open(name).expect("open the coverage map"));
}

fn edge(e: usize, id: u32) {
    if let Some(map) = MAP.get() {
        map[e % EDGES].fetch_min(id, Ordering::Relaxed);
    }
}

/// The code under test: a toy parser with four planted bugs behind four-byte magics.
fn target(input: Input) -> u32 {
    let d = &input.data[..(input.len as usize).min(LEN)];
    let id = input.id;
    let at = |i: usize| d.get(i).copied().unwrap_or(0);
    edge(0, id);
    let mut sum = 0u32;
    for (magic, base) in [(b"FUZZ", 1), (b"HANG", 6), (b"SLOW", 11), (b"ABRT", 16)] {
        let matched = magic.iter().enumerate().take_while(|&(i, &m)| at(i) == m).count();
        for k in 0..matched {
            edge(base + k, id);
        }
        if matched == 4 {
            match magic {
                b"FUZZ" => {
                    // Planted bug 1: a wild write (raised as the SIGSEGV it would be).
                    // SAFETY: signal and raise have no preconditions; it ends this worker.
                    // (Rust's own SIGSEGV handler, for stack overflows, would return from a raised one.)
                    unsafe {
                        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                        libc::raise(libc::SIGSEGV);
                    }
                }
                b"HANG" => loop {
                    // Planted bug 2: an infinite loop.
                    std::hint::spin_loop();
                },
                b"SLOW" => std::thread::sleep(Duration::from_millis(3)), // the slow path
                _ => {
                    // Planted bug 3: a failed check that aborts, saying why on stderr.
                    eprintln!("assertion failed: header checksum {:#x} != 0", at(4));
                    std::process::abort();
                }
            }
        }
    }
    // Ordinary branches, for coverage to grow on.
    if d.len() > 8 {
        edge(21 + usize::from(at(4) % 8), id);
        if at(5).is_ascii_digit() {
            edge(29 + usize::from(at(5) - b'0'), id);
            if at(6) == b'-' {
                edge(39, id);
            }
            if at(6) == b'-' && at(7) == b'!' {
                // Planted bug 4: an index out of bounds (a panic; the worker lives on).
                let table = [0u32; 4];
                sum += table[usize::from(at(5))];
            }
        }
    }
    for &b in d {
        sum = sum.wrapping_mul(31).wrapping_add(u32::from(b));
    }
    sum
}

// ---------------------------------------------------------------- the parent's side

/// xorshift64*: small, fast, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn mutate(rng: &mut Rng, parent: &Input, id: u32) -> Input {
    let mut x = *parent;
    x.id = id;
    for _ in 0..1 + rng.below(3) {
        let i = rng.below(LEN);
        match rng.below(4) {
            0 => x.data[i] ^= 1 << rng.below(8),
            1 => x.data[i] = b"FUZHANGSLOWABRT0123456789-!"[rng.below(27)],
            _ => x.data[i] = rng.next() as u8,
        }
    }
    if rng.below(16) == 0 {
        x.len = 1 + rng.below(LEN) as u32;
    }
    x
}

struct Options {
    seed: u64,
    execs: u64,
    seconds: u64,
    workers: usize,
    out: Option<PathBuf>,
}

fn options() -> Result<Options, String> {
    let mut o = Options { seed: 1, execs: 400_000, seconds: 50, workers: 2, out: None };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).ok_or(format!("{} needs a value", pair[0]))?;
        let num = || value.parse::<u64>().map_err(|e| format!("{}: {e}", pair[0]));
        match pair[0].as_str() {
            "--seed" => o.seed = num()?,
            "--execs" => o.execs = num()?,
            "--seconds" => o.seconds = num()?,
            "--workers" => o.workers = num()? as usize,
            "--out" => o.out = Some(PathBuf::from(value)),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

/// A saved bug: its kind and the magic bytes that reach it.
fn signature(e: &TaskError, input: &Input) -> String {
    let kind = match &e.error {
        PoolError::WorkerDied { signal, .. } => format!("crash-sig{signal}"),
        PoolError::WorkerExited { code, .. } => format!("exit{code}"),
        PoolError::TaskTimedOut { .. } => "hang".to_owned(),
        PoolError::TaskPanicked { .. } => "panic".to_owned(),
        _ => "error".to_owned(),
    };
    let head: String =
        input.data[..4].iter().map(|&b| if b.is_ascii_alphanumeric() { b as char } else { '_' }).collect();
    format!("{kind}-{head}")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = options()?;
    let out = o.out.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("shmkit-fuzz-{}", std::process::id())));
    std::fs::create_dir_all(&out)?;
    let map = Map::create(None, |m| m.iter_mut().for_each(|w| *w.get_mut() = u32::MAX))?;
    let mut name = [0u8; 64];
    let n = map.name().ok_or("the map has a name")?;
    name[..n.len()].copy_from_slice(n.as_bytes());
    let pool = Pool::builder()
        .processes(o.workers)
        .initializer_with(open_map, name)
        .task_timeout(Duration::from_millis(50))
        .capture_stderr(512)
        .build()?;
    println!("fuzzing with {} workers, seed {}, saving bugs to {}", o.workers, o.seed, out.display());

    let mut rng = Rng(o.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let seed = Input { id: 0, len: LEN as u32, data: *b"hello, fuzzing world!..." };
    let mut corpus = vec![seed];
    let mut covered = BTreeSet::new();
    let mut bugs: BTreeMap<String, u64> = BTreeMap::new();
    let (mut execs, mut crashes, mut hangs, mut panics) = (0u64, 0u64, 0u64, 0u64);
    let start = Instant::now();
    let mut last_line = Instant::now();
    let opts = ItemOptions::new().chunksize(64);
    while execs < o.execs && start.elapsed() < Duration::from_secs(o.seconds) {
        let base = execs as u32 + 1;
        let count = BATCH.min((o.execs - execs) as usize);
        let batch: Vec<Input> = (0..count)
            .map(|i| {
                let parent = corpus[rng.below(corpus.len())];
                mutate(&mut rng, &parent, base + i as u32)
            })
            .collect();
        let results = pool.map_results_with(target, batch.iter().copied(), opts)?;
        execs += count as u64;
        // Which inputs failed, and how; saved once per distinct bug.
        for (r, input) in results.iter().zip(&batch) {
            let Err(e) = r else { continue };
            match &e.error {
                PoolError::TaskTimedOut { .. } => hangs += 1,
                PoolError::TaskPanicked { .. } => panics += 1,
                _ => crashes += 1,
            }
            let sig = signature(e, input);
            let seen = bugs.entry(sig.clone()).or_insert(0);
            *seen += 1;
            if *seen == 1 {
                std::fs::write(out.join(format!("{sig}.bin")), &input.data[..input.len as usize])?;
                std::fs::write(out.join(format!("{sig}.txt")), format!("{e}\n"))?;
            }
        }
        // New coverage: keep the first input (by id) that reached each new edge, if it ran
        // to the end.
        for (e, word) in map.iter().enumerate() {
            let first = word.load(Ordering::Relaxed);
            if first == u32::MAX || !covered.insert(e) {
                continue;
            }
            let i = (first - base) as usize;
            if results.get(i).is_some_and(Result::is_ok) {
                corpus.push(batch[i]);
            }
        }
        if last_line.elapsed() >= Duration::from_secs(1) || execs >= o.execs {
            last_line = Instant::now();
            let t = start.elapsed().as_secs_f64();
            println!(
                "[{t:5.1}s] execs {execs:>8} ({:>7.0}/s)  crashes {crashes} ({} unique)  hangs {hangs}  panics {panics}  coverage {}/{EDGES}  corpus {}",
                execs as f64 / t,
                bugs.keys().filter(|k| !k.starts_with("hang") && !k.starts_with("panic")).count(),
                covered.len(),
                corpus.len()
            );
        }
    }
    println!("bugs found (first input saved in {}):", out.display());
    for (sig, count) in &bugs {
        let text = std::fs::read_to_string(out.join(format!("{sig}.txt")))?;
        println!("  {sig:<20} x{count:<6} {}", text.trim_end());
    }
    Ok(())
}
