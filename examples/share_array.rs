//! Two processes fill one shared array, each its own half, then the parent sums it.
//!
//! The second process is this program started again with `--child NAME`: an unrelated
//! process that meets the first one by segment name, as scheduler-started HPC tools do.
//!
//! ```text
//! cargo run --release --example share_array
//! ```

use std::process::Command;
use std::time::Instant;

use shmkit::SharedArray;

const LEN: usize = 1 << 23; // 8 Mi f64 = 64 MiB

fn value(i: usize) -> f64 {
    (i % 1000) as f64 * 0.5
}

fn fill(a: &SharedArray<f64>, range: std::ops::Range<usize>) -> Result<(), shmkit::Error> {
    let start = range.start;
    let mut mine = a.claim_mut(range)?; // our half, exclusively; the other process holds the other
    for (k, x) in mine.iter_mut().enumerate() {
        *x = value(start + k);
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, name] = &args[..]
        && flag == "--child"
    {
        let a = SharedArray::<f64>::open(name)?;
        fill(&a, LEN / 2..LEN)?;
        return Ok(());
    }

    let t = Instant::now();
    let a = SharedArray::<f64>::create(None, LEN)?;
    let name = a.name().ok_or("named array has a name")?.to_owned();
    println!("created {name}: {LEN} f64 ({} MiB)", (LEN * 8) >> 20);
    let mut child = Command::new(std::env::current_exe()?).args(["--child", &name]).spawn()?;
    println!(
        "child pid {} fills {}..{}; parent pid {} fills 0..{}",
        child.id(),
        LEN / 2,
        LEN,
        std::process::id(),
        LEN / 2
    );
    fill(&a, 0..LEN / 2)?;
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("child failed: {status}").into());
    }
    let sum: f64 = a.read()?.iter().sum();
    let expected: f64 = (0..LEN).map(value).sum();
    println!("sum = {sum} (expected {expected}) in {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    if sum != expected {
        return Err("sum mismatch".into());
    }
    println!("ok: both halves written by two processes, read back from one shared segment");
    Ok(()) // dropping `a` unlinks the segment
}
