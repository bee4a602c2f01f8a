//! Scheduler queries for the adaptive wait policy (`sync::wait`): give the CPU away, and how
//! many CPUs there are to spin on.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// `sched_yield`: let another runnable thread of this CPU run, if there is one.
#[inline]
pub fn yield_now() {
    // nix's wrapper: sched_yield cannot fail on Linux, so the result carries nothing.
    let _ = nix::sched::sched_yield();
}

/// Online CPUs, read once (`sysconf(_SC_NPROCESSORS_ONLN)`; 1 if it cannot be read).
pub fn online_cpus() -> u32 {
    static CPUS: AtomicU32 = AtomicU32::new(0);
    match CPUS.load(Relaxed) {
        0 => {
            let n = match nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN) {
                Ok(Some(n)) if n > 0 => u32::try_from(n).unwrap_or(u32::MAX),
                _ => 1,
            };
            CPUS.store(n, Relaxed);
            n
        }
        n => n,
    }
}
