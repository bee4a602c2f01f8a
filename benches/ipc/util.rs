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

/// Fork a child that runs `f` and `_exit`s, pinned to CPU 1.
pub fn fork_child(f: impl FnOnce()) -> libc::pid_t {
    fork_on(Some(1), f)
}

/// Fork a child that runs `f` and `_exit`s (status 101 if `f` panics), pinned to `cpu` if
/// given, else keeping the parent's CPU mask. The benchmark binary is single-threaded.
pub fn fork_on(cpu: Option<usize>, f: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the benchmark process is single-threaded, so the child inherits no lock held
    // by another thread; it runs `f` and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        if let Some(cpu) = cpu {
            pin(cpu);
        }
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_ok();
        // SAFETY: end the child without running the parent's destructors or atexit handlers.
        unsafe { libc::_exit(if ok { 0 } else { 101 }) };
    }
    pid
}

/// Reap a child started by [`fork_on`]; a child that failed fails the benchmark.
pub fn reap_child(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waitpid on our own child with a valid status pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "bench child failed: {status:#x}");
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

/// The raw futex ping-pong floor: this process and a forked echo child pinned to CPU 1
/// hand one shared word back and forth with FUTEX_WAIT/FUTEX_WAKE. Kept alive so that its
/// rounds can be interleaved with the candidate's (cross-CPU wake-up latency drifts a lot
/// on a virtual machine; interleaving makes both see the same drift).
pub struct FutexPingPong {
    page: SharedPage,
    child: libc::pid_t,
}

const PING: u32 = 1;
const PONG: u32 = 2;
const STOP: u32 = 3;

impl FutexPingPong {
    pub fn new() -> Self {
        let page = SharedPage::new(4096);
        let child = {
            let word = Self::word_of(&page);
            fork_child(|| {
                while Self::wait_for(word, PING) == PING {
                    word.store(PONG, std::sync::atomic::Ordering::Release);
                    futex(word, libc::FUTEX_WAKE, 1);
                }
            })
        };
        FutexPingPong { page, child }
    }

    fn word_of(page: &SharedPage) -> &std::sync::atomic::AtomicU32 {
        // SAFETY: the page is zeroed, aligned, and outlives the child (reaped on drop).
        unsafe { &*page.ptr().cast::<std::sync::atomic::AtomicU32>() }
    }

    fn wait_for(word: &std::sync::atomic::AtomicU32, want: u32) -> u32 {
        loop {
            let v = word.load(std::sync::atomic::Ordering::Acquire);
            if v == want || v == STOP {
                return v;
            }
            futex(word, libc::FUTEX_WAIT, v);
        }
    }

    /// `iters` round trips; the elapsed time.
    pub fn round(&self, iters: usize) -> Duration {
        let word = Self::word_of(&self.page);
        let start = Instant::now();
        for _ in 0..iters {
            word.store(PING, std::sync::atomic::Ordering::Release);
            futex(word, libc::FUTEX_WAKE, 1);
            Self::wait_for(word, PONG);
        }
        start.elapsed()
    }
}

impl Drop for FutexPingPong {
    fn drop(&mut self) {
        let word = Self::word_of(&self.page);
        word.store(STOP, std::sync::atomic::Ordering::Release);
        futex(word, libc::FUTEX_WAKE, 1);
        reap_child(self.child);
    }
}
