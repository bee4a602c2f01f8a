//! Process-wide count of robust locks this process currently holds.
//!
//! glibc links every robust mutex a thread holds into that thread's robust list,
//! *through the mutex memory itself*. If a mapping were unmapped while a thread still
//! held a lock inside it (possible in safe code with `mem::forget(guard)`), the next
//! robust-lock operation of that thread would walk into unmapped memory. So every
//! lock guard counts itself here, and a mapping is leaked rather than unmapped while
//! any thread of the process holds a shmkit lock.
//!
//! The counters are per thread (a plain load and store on the fast path, no atomic
//! read-modify-write), registered in a global list that the rare unmap path sums.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

static REGISTRY: Mutex<Vec<Arc<AtomicUsize>>> = Mutex::new(Vec::new());

struct ThreadCounter(Arc<AtomicUsize>);

impl ThreadCounter {
    fn new() -> Self {
        let c = Arc::new(AtomicUsize::new(0));
        REGISTRY.lock().unwrap_or_else(PoisonError::into_inner).push(Arc::clone(&c));
        Self(c)
    }
}

impl Drop for ThreadCounter {
    fn drop(&mut self) {
        // A thread that exits with locks held had them released as owner-died by the
        // kernel's robust-list walk; it touches no mapping any more.
        let mut reg = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        reg.retain(|c| !Arc::ptr_eq(c, &self.0));
    }
}

thread_local! {
    static COUNTER: ThreadCounter = ThreadCounter::new();
}

/// Record that this thread acquired a robust lock.
#[inline]
pub fn acquired() {
    // Only this thread writes its counter, so load + store is enough.
    let _ = COUNTER.try_with(|c| {
        let v = c.0.load(Ordering::Relaxed);
        c.0.store(v + 1, Ordering::Relaxed);
    });
}

/// Record that this thread released a robust lock.
#[inline]
pub fn released() {
    let _ = COUNTER.try_with(|c| {
        let v = c.0.load(Ordering::Relaxed);
        c.0.store(v.saturating_sub(1), Ordering::Relaxed);
    });
}

/// Whether any thread of this process holds a robust lock right now.
pub fn any_held() -> bool {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner).iter().any(|c| c.load(Ordering::Acquire) != 0)
}
