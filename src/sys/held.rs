//! Process-wide count of robust locks this process currently holds.
//!
//! glibc links every robust mutex a thread holds into that thread's robust list,
//! *through the mutex memory itself*. If a mapping were unmapped while a thread still
//! held a lock inside it (possible in safe code with `mem::forget(guard)`), the next
//! robust-lock operation of that thread would walk into unmapped memory. So every
//! lock guard counts itself here, and a mapping is leaked rather than unmapped while
//! any thread of the process holds a shmkit lock.
//!
//! Hot path (every lock and unlock): a const-initialised thread-local counter, read and
//! written with plain (relaxed) loads and stores — no lazy-init check, no atomic
//! read-modify-write. Each thread registers its counter's address once, on its first
//! lock, in a global list that the rare unmap path sums; a second thread-local with a
//! destructor takes the address out of the list before the thread's storage goes away.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// Addresses of registered threads' counters.
static REGISTRY: Mutex<Vec<usize>> = Mutex::new(Vec::new());

thread_local! {
    static COUNT: AtomicUsize = const { AtomicUsize::new(0) };
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
    static DEREGISTER: Deregister = const { Deregister };
}

/// Removes this thread's counter from the registry when the thread exits. `COUNT` has no
/// destructor, so its storage is still valid while this runs; `any_held` reads counters
/// only under the registry lock, which this takes first.
struct Deregister;

impl Drop for Deregister {
    fn drop(&mut self) {
        let me = COUNT.with(|c| std::ptr::from_ref(c) as usize);
        REGISTRY.lock().unwrap_or_else(PoisonError::into_inner).retain(|&p| p != me);
    }
}

#[cold]
fn register() {
    REGISTERED.with(|r| r.set(true));
    // Touching DEREGISTER registers its destructor for this thread.
    let _ = DEREGISTER.try_with(|_| ());
    let me = COUNT.with(|c| std::ptr::from_ref(c) as usize);
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner).push(me);
}

/// Record that this thread acquired a robust lock.
#[inline]
pub fn acquired() {
    if !REGISTERED.with(Cell::get) {
        register();
    }
    // Only this thread writes its counter, so load + store is enough.
    COUNT.with(|c| c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed));
}

/// Record that this thread released a robust lock.
#[inline]
pub fn released() {
    COUNT.with(|c| c.store(c.load(Ordering::Relaxed).saturating_sub(1), Ordering::Relaxed));
}

/// Whether any thread of this process holds a robust lock right now.
pub fn any_held() -> bool {
    let reg = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    reg.iter().any(|&p| {
        // SAFETY: `p` is the address of a live thread's `COUNT`: threads remove their entry
        // (under this lock, which we hold) before their thread-local storage is freed.
        let c = unsafe { &*(p as *const AtomicUsize) };
        c.load(Ordering::Acquire) != 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_thread_and_forgets_exited_threads() {
        let before = REGISTRY.lock().unwrap().len();
        std::thread::spawn(|| {
            acquired();
            assert!(any_held());
            released();
        })
        .join()
        .unwrap();
        assert_eq!(REGISTRY.lock().unwrap().len(), before, "the exited thread deregistered");
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            acquired(); // a "forgotten guard" in another thread
            tx.send(()).unwrap();
            done_rx.recv().unwrap();
        });
        rx.recv().unwrap();
        assert!(any_held(), "another thread's held lock is seen");
        done_tx.send(()).unwrap();
        t.join().unwrap();
    }
}
