//! Timing helpers shared by every benchmark module.
//!
//! - Output: one line per figure, exactly `name: value unit` ([`Harness::report`]).
//! - Selection: `cargo bench --bench ipc -- FILTER...` runs only the figures whose
//!   `group/name` contains one of the filters (`segment`, `floor`, `segment/segment_open`).
//! - Measurement: [`Harness::interleaved`] runs the candidates in alternating rounds (so
//!   a noisy neighbour slows them alike) and reports each one's median over the rounds.
#![allow(dead_code)] // not every module uses every helper

use std::time::{Duration, Instant};

/// Command line selection and reporting for one run of the benchmark binary.
pub struct Harness {
    filters: Vec<String>,
    group: &'static str,
}

impl Harness {
    /// Read filters from argv, ignoring flags (`cargo bench` passes `--bench`).
    pub fn from_args() -> Self {
        let filters = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
        Harness { filters, group: "" }
    }

    /// Name the group (module) whose figures follow; filters match `group/name`.
    pub fn group(&mut self, group: &'static str) {
        self.group = group;
    }

    /// Whether figure `name` of the current group was asked for.
    pub fn wants(&self, name: &str) -> bool {
        let full = format!("{}/{name}", self.group);
        self.filters.is_empty() || self.filters.iter().any(|f| full.contains(f.as_str()))
    }

    /// Whether any figure of the current group among `names` was asked for.
    pub fn wants_any(&self, names: &[&str]) -> bool {
        names.iter().any(|n| self.wants(n))
    }

    /// Print one figure: `name: value unit`.
    pub fn report(&self, name: &str, value: f64, unit: &str) {
        println!("{name}: {} {unit}", fmt_value(value));
    }

    /// Print `name: a/b x` when both figures were measured.
    pub fn ratio(&self, name: &str, a: Option<f64>, b: Option<f64>) {
        if let (Some(a), Some(b)) = (a, b)
            && b > 0.0
        {
            println!("{name}: {:.2} x", a / b);
        }
    }

    /// Run each wanted candidate `rounds` times, `iters` operations per round, alternating
    /// candidates within a round; return (and print, in `unit`) the median per-operation
    /// time of each wanted one, `None` for those filtered out.
    ///
    /// `unit` is `"us"` or `"ns"`. Each closure runs `iters` operations and returns the
    /// time they took (so it can exclude its own set-up).
    pub fn interleaved(
        &self,
        rounds: usize,
        iters: usize,
        unit: &str,
        candidates: &mut [(&str, &mut dyn FnMut(usize) -> Duration)],
    ) -> Vec<Option<f64>> {
        let scale = match unit {
            "ns" => 1e9,
            "us" => 1e6,
            "ms" => 1e3,
            _ => 1.0,
        };
        let wanted: Vec<bool> = candidates.iter().map(|(n, _)| self.wants(n)).collect();
        let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); candidates.len()];
        // One untimed warm-up round (page cache, lazy symbol binding, allocator).
        for (i, (_, f)) in candidates.iter_mut().enumerate() {
            if wanted[i] {
                f(iters.div_ceil(4));
            }
        }
        for _ in 0..rounds {
            for (i, (_, f)) in candidates.iter_mut().enumerate() {
                if wanted[i] {
                    samples[i].push(f(iters).as_secs_f64() * scale / iters as f64);
                }
            }
        }
        candidates
            .iter()
            .zip(samples)
            .zip(wanted)
            .map(|(((name, _), mut s), wanted)| {
                wanted.then(|| {
                    let m = median(&mut s);
                    self.report(name, m, unit);
                    m
                })
            })
            .collect()
    }
}

/// Time `iters` calls of `op`.
pub fn time_iters(iters: usize, mut op: impl FnMut(usize)) -> Duration {
    let start = Instant::now();
    for i in 0..iters {
        op(i);
    }
    start.elapsed()
}

/// Median of the samples (mean of the middle two for an even count); NaN when empty.
pub fn median(samples: &mut [f64]) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n % 2 == 1 { samples[n / 2] } else { (samples[n / 2 - 1] + samples[n / 2]) / 2.0 }
}

/// Three significant digits at least, no exponent.
fn fmt_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
