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

/// This process's CPU mask, if it can be read.
pub fn affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is a plain bitmask; all zeroes is valid, and the call only writes it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size given.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    (r == 0).then_some(set)
}

/// Restore a mask read by [`affinity`].
pub fn set_affinity(set: &libc::cpu_set_t) {
    // SAFETY: `set` is a valid cpu_set_t of the size given; the call only reads it.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
}

/// Pin the calling process to `cpu` if the machine has more than one CPU it may use (so two
/// ping-ponging processes each get a CPU of their own, as the floors they compare with do).
pub fn pin(cpu: usize) {
    // Count the machine's online CPUs, not this process's mask: a forked child inherits its
    // parent's single-CPU mask and must still move to its own CPU.
    // SAFETY: sysconf has no memory-safety preconditions.
    if unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } < 2 {
        return;
    }
    // SAFETY: CPU_SET writes one bit of our own zeroed mask.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    };
    set_affinity(&set);
}

/// Run `f` with this process pinned to CPU 0 (children from [`fork_child`] go to CPU 1).
pub fn pinned<R>(f: impl FnOnce() -> R) -> R {
    let saved = affinity();
    pin(0);
    let r = f();
    if let Some(set) = saved {
        set_affinity(&set);
    }
    r
}

/// Fork a child that runs `f` and `_exit`s, pinned to CPU 1. The benchmark binary is
/// single-threaded.
pub fn fork_child(f: impl FnOnce()) -> libc::pid_t {
    fork_child_on(1, f)
}

/// Fork a child that runs `f` and `_exit`s, pinned to `cpu`. The benchmark binary is
/// single-threaded.
pub fn fork_child_on(cpu: usize, f: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the benchmark process is single-threaded, so the child inherits no lock held
    // by another thread; it runs `f` and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        pin(cpu);
        f();
        // SAFETY: end the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    pid
}

/// Reap a child started by [`fork_child`].
pub fn reap_child(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waitpid on our own child with a valid status pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

/// A zeroed anonymous `MAP_SHARED` region of `len` bytes, shared with forked children;
/// unmapped on drop.
pub struct SharedPage {
    ptr: *mut libc::c_void,
    len: usize,
}

impl SharedPage {
    pub fn new(len: usize) -> Self {
        // SAFETY: a fresh anonymous shared mapping; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap");
        SharedPage { ptr, len }
    }

    pub fn ptr(&self) -> *mut u8 {
        self.ptr.cast()
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: our own mapping; callers reap every child that uses it first.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

fn futex(word: &std::sync::atomic::AtomicU32, op: libc::c_int, val: u32) {
    // SAFETY: `word` is an aligned 32-bit word in a MAP_SHARED mapping that outlives the
    // call; FUTEX_WAIT/FUTEX_WAKE (shared, not private) only use its address and value.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), op, val, std::ptr::null::<libc::timespec>(), 0usize, 0u32) };
}

/// The raw futex ping-pong floor between two processes pinned to CPUs 0 and 1, in µs per
/// round trip: measured once per run, printed once as `floor_futex_pingpong_rtt`, shared by
/// every module that compares against it (semaphores, pipes).
pub fn futex_pingpong_floor(h: &Harness) -> f64 {
    static FLOOR: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *FLOOR.get_or_init(|| {
        let f = pinned(|| measure_futex_pingpong(2000, 15));
        h.report("floor_futex_pingpong_rtt", f, "us");
        f
    })
}

fn measure_futex_pingpong(iters: usize, rounds: usize) -> f64 {
    use std::sync::atomic::{AtomicU32, Ordering};
    let page = SharedPage::new(4096);
    // SAFETY: the page is zeroed, aligned and outlives the child (reaped below).
    let word = unsafe { &*page.ptr().cast::<AtomicU32>() };
    const PING: u32 = 1;
    const PONG: u32 = 2;
    const STOP: u32 = 3;
    let wait_for = |want: u32| loop {
        let v = word.load(Ordering::Acquire);
        if v == want || v == STOP {
            return v;
        }
        futex(word, libc::FUTEX_WAIT, v);
    };
    let child = fork_child(|| {
        while wait_for(PING) == PING {
            word.store(PONG, Ordering::Release);
            futex(word, libc::FUTEX_WAKE, 1);
        }
    });
    let mut samples = Vec::new();
    for round in 0..=rounds {
        let start = Instant::now();
        for _ in 0..iters {
            word.store(PING, Ordering::Release);
            futex(word, libc::FUTEX_WAKE, 1);
            wait_for(PONG);
        }
        if round > 0 {
            samples.push(start.elapsed().as_secs_f64() * 1e6 / iters as f64);
        }
    }
    word.store(STOP, Ordering::Release);
    futex(word, libc::FUTEX_WAKE, 1);
    reap_child(child);
    median(&mut samples)
}
