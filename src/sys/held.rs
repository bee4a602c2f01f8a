//! Which robust locks this process currently holds, by address.
//!
//! glibc links every robust mutex a thread holds into that thread's robust list,
//! *through the mutex memory itself*. If a mapping were unmapped while a thread still
//! held a lock inside it (possible in safe code with `mem::forget(guard)`), the next
//! robust-lock operation of that thread would walk into unmapped memory. So every
//! acquisition records the lock's address here, and a mapping is kept (leaked) rather
//! than unmapped exactly when a lock held by some thread of the process lies inside it
//! ([`any_held_in`]); every other mapping is unmapped, whatever else is held.
//!
//! Hot path (every lock and unlock): a const-initialised thread-local record, read and
//! written with relaxed loads and stores — no lazy-init check, no atomic
//! read-modify-write. It keeps the addresses of the first [`TRACKED`] locks a thread holds
//! at once (a stack: releases are almost always last-in first-out) and a count of all of
//! them; beyond that the thread's record turns conservative ("may hold a lock anywhere")
//! until it is back within bounds. Each thread registers its record once, on its first
//! lock, in a global list that the rare unmap path reads; a second thread-local with a
//! destructor takes the record out of the list before the thread's storage goes away.
//!
//! A forked child does not own its parent's locks (glibc resets the robust list), so a
//! `pthread_atfork` child handler empties the forking thread's record.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// How many held locks per thread are tracked by address.
pub const TRACKED: usize = 8;

/// Addresses of registered threads' records.
static REGISTRY: Mutex<Vec<usize>> = Mutex::new(Vec::new());
/// Locks held by threads that have exited (or are exiting) holding them: the kernel walks
/// such a thread's robust list only after its thread-locals are gone, and the locks stay
/// in it for good, so their mappings stay pinned for the life of the process. `None`:
/// unknown addresses (a record that had overflowed): every exposed mapping is pinned.
static PINNED: Mutex<Option<Vec<usize>>> = Mutex::new(Some(Vec::new()));
static AT_FORK: AtomicU8 = AtomicU8::new(0);

super::register_at_load!(register_fork_handlers);

fn register_fork_handlers() {
    super::once_without_waiting(&AT_FORK, || {
        // SAFETY: `before_fork` and `after_fork` run in the forking thread and only take and
        // release this module's two process-private locks; `after_fork_in_child` also
        // resets this thread's const thread-local with atomic stores.
        unsafe { libc::pthread_atfork(Some(before_fork), Some(after_fork), Some(after_fork_in_child)) };
    });
}

/// The registry's two locks, held by a forking thread from its prepare handler to its
/// parent or child handler, so that no child is forked while another thread holds them
/// (it would wait for ever on a lock whose holder it does not have).
type ForkGuards = (MutexGuard<'static, Vec<usize>>, MutexGuard<'static, Option<Vec<usize>>>);

thread_local! {
    static FORKING: RefCell<Option<ForkGuards>> = const { RefCell::new(None) };
}

extern "C" fn before_fork() {
    // The order of `any_held_in` and `Deregister`: the registry, then the pinned list.
    let registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    let pinned = PINNED.lock().unwrap_or_else(PoisonError::into_inner);
    let _ = FORKING.try_with(|f| *f.borrow_mut() = Some((registry, pinned)));
}

extern "C" fn after_fork() {
    let _ = FORKING.try_with(|f| f.borrow_mut().take());
}

/// One thread's held locks. Only its thread writes it; the unmap path reads it.
struct Held {
    /// Locks held in all; the first `min(len, TRACKED)` are in `addrs` unless `inexact`.
    len: AtomicUsize,
    /// Set when the thread held more than `TRACKED` locks and released one out of order
    /// meanwhile, so `addrs` may miss some: the record then answers "anywhere" until the
    /// thread holds no lock at all.
    inexact: AtomicBool,
    /// 0: not registered yet; 1: in the registry; 2: deregistered (the thread is exiting:
    /// locks it takes now are pinned at once).
    registered: AtomicU8,
    addrs: [AtomicUsize; TRACKED],
}

thread_local! {
    static HELD: Held = const {
        Held {
            len: AtomicUsize::new(0),
            inexact: AtomicBool::new(false),
            registered: AtomicU8::new(0),
            addrs: [const { AtomicUsize::new(0) }; TRACKED],
        }
    };
    static DEREGISTER: Deregister = const { Deregister };
}

/// Removes this thread's record from the registry when the thread exits. `HELD` has no
/// destructor, so its storage is still valid while this runs; readers look at records
/// only under the registry lock, which this takes first.
struct Deregister;

impl Drop for Deregister {
    fn drop(&mut self) {
        let _ = HELD.try_with(|h| {
            let me = std::ptr::from_ref(h) as usize;
            let mut reg = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
            // Whatever this thread still holds (a forgotten guard) stays held past its exit.
            let len = h.len.load(Relaxed);
            if len > 0 {
                let known = len <= TRACKED && !h.inexact.load(Relaxed);
                pin((0..len.min(TRACKED)).map(|i| h.addrs[i].load(Relaxed)), known);
            }
            h.registered.store(2, Relaxed);
            reg.retain(|&p| p != me);
        });
    }
}

/// Pin the mappings holding `addrs` for good (`known == false`: addresses unknown).
fn pin(addrs: impl Iterator<Item = usize>, known: bool) {
    let mut pinned = PINNED.lock().unwrap_or_else(PoisonError::into_inner);
    match (&mut *pinned, known) {
        (Some(list), true) => list.extend(addrs),
        _ => *pinned = None,
    }
}

extern "C" fn after_fork_in_child() {
    after_fork();
    // Only the forking thread exists in the child; it holds none of its parent's locks.
    let _ = HELD.try_with(|h| {
        h.len.store(0, Relaxed);
        h.inexact.store(false, Relaxed);
    });
}

#[cold]
fn register(h: &Held) {
    register_fork_handlers();
    h.registered.store(1, Relaxed);
    // Touching DEREGISTER registers its destructor for this thread.
    let _ = DEREGISTER.try_with(|_| ());
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner).push(std::ptr::from_ref(h) as usize);
}

/// Record that this thread acquired (or is about to acquire) the robust lock at `addr`.
#[inline]
pub fn acquired(addr: usize) {
    HELD.with(|h| {
        if h.registered.load(Relaxed) != 1 {
            if h.registered.load(Relaxed) == 2 {
                // A lock taken by a thread-local destructor of an exiting thread.
                pin(std::iter::once(addr), true);
                return;
            }
            register(h);
        }
        let len = h.len.load(Relaxed);
        if len < TRACKED {
            h.addrs[len].store(addr, Relaxed);
        }
        h.len.store(len + 1, Relaxed);
    });
}

/// Record that this thread released the robust lock at `addr`.
#[inline]
pub fn released(addr: usize) {
    HELD.with(|h| {
        let len = h.len.load(Relaxed);
        // Almost always: the last lock taken is the first released.
        if len > 0 && len <= TRACKED && h.addrs[len - 1].load(Relaxed) == addr {
            h.len.store(len - 1, Relaxed);
        } else {
            released_slow(h, addr, len);
        }
    });
}

#[cold]
fn released_slow(h: &Held, addr: usize, len: usize) {
    if len == 0 {
        return;
    }
    let tracked = len.min(TRACKED);
    match (0..tracked).rev().find(|&i| h.addrs[i].load(Relaxed) == addr) {
        // Out of order within the tracked ones: move the last tracked one into its place.
        Some(i) if len <= TRACKED => h.addrs[i].store(h.addrs[len - 1].load(Relaxed), Relaxed),
        // A tracked lock released while untracked ones are held: the record has a hole.
        Some(_) => h.inexact.store(true, Relaxed),
        // An untracked one (len > TRACKED): the tracked ones are still exact.
        None => {}
    }
    h.len.store(len - 1, Relaxed);
    if len == 1 {
        h.inexact.store(false, Relaxed);
    }
}

/// Whether a child forked now would get a copy of a live guard: the calling thread holds
/// a robust lock, or a thread of this process exited holding one (its leaked guard can be
/// reached from any thread).
pub fn fork_would_copy_guards() -> bool {
    let pinned = match &*PINNED.lock().unwrap_or_else(PoisonError::into_inner) {
        Some(list) => !list.is_empty(),
        None => true,
    };
    pinned || HELD.try_with(|h| h.len.load(Relaxed) > 0).unwrap_or(false)
}

/// Whether any thread of this process holds a robust lock that may lie in
/// `[base, base + len)`. Exact while each thread holds at most [`TRACKED`] locks;
/// conservative (`true`) for a thread holding more.
pub fn any_held_in(base: usize, len: usize) -> bool {
    let reg = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    match &*PINNED.lock().unwrap_or_else(PoisonError::into_inner) {
        Some(list) if list.iter().any(|a| a.wrapping_sub(base) < len) => return true,
        None => return true,
        _ => {}
    }
    reg.iter().any(|&p| {
        // SAFETY: `p` is the address of a live thread's `HELD`: threads remove their entry
        // (under this lock, which we hold) before their thread-local storage is freed.
        let h = unsafe { &*(p as *const Held) };
        let held = h.len.load(Relaxed);
        held > TRACKED
            || (held > 0 && h.inexact.load(Relaxed))
            || h.addrs[..held].iter().any(|a| a.load(Relaxed).wrapping_sub(base) < len)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: usize = 0x1000;

    /// The tests read the process-wide registry: one at a time.
    static TURN: Mutex<()> = Mutex::new(());

    #[test]
    fn only_mappings_holding_a_held_lock_are_reported() {
        let _turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
        std::thread::spawn(|| {
            acquired(A + 8);
            assert!(any_held_in(A, 64));
            assert!(!any_held_in(A + 64, 64), "a lock elsewhere does not pin this mapping");
            released(A + 8);
            assert!(!any_held_in(A, 64));
        })
        .join()
        .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            acquired(A + 16); // held by another thread
            tx.send(()).unwrap();
            done_rx.recv().unwrap();
            released(A + 16);
        });
        rx.recv().unwrap();
        assert!(any_held_in(A, 64), "another thread's held lock is seen");
        done_tx.send(()).unwrap();
        t.join().unwrap();
        assert!(!any_held_in(A, 64), "released, and the exited thread deregistered");
    }

    #[test]
    fn locks_a_thread_exits_holding_stay_pinned() {
        let _turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
        const B: usize = 0x7000_0000;
        std::thread::spawn(|| acquired(B + 8)).join().unwrap();
        assert!(any_held_in(B, 64), "a lock its thread exited holding stays in that thread's robust list");
        assert!(!any_held_in(B + 64, 64));
    }

    #[test]
    fn beyond_the_tracked_locks_a_thread_is_conservative_until_it_is_back() {
        let _turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
        std::thread::spawn(|| {
            let base = 0x10_0000;
            for i in 0..TRACKED + 2 {
                acquired(base + i * 64);
            }
            assert!(any_held_in(0x9000_0000, 64), "untracked locks may be anywhere");
            for i in (0..TRACKED + 2).rev() {
                released(base + i * 64);
            }
            assert!(!any_held_in(0x9000_0000, 64));
            assert!(!any_held_in(base, 4096));
            // Out-of-order release keeps the others tracked.
            acquired(base);
            acquired(base + 64);
            released(base);
            assert!(any_held_in(base + 64, 1));
            assert!(!any_held_in(base, 1));
            released(base + 64);
        })
        .join()
        .unwrap();
    }
}
