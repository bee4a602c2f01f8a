//! Claim slots left by processes that died are reclaimed, in every claim mode — also when
//! the dead holder's claim conflicts with nothing a later claimant asks for (atomic with
//! atomic, shared with shared, disjoint ranges), which the conflict scan never meets.
//! Live holders' claims and claims abandoned by a thread of a live process stay in force.
//! The other per-holder slot tables (`RwLock` reader slots, `RobustSemaphore` permits)
//! are checked for the same leak.

mod common;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use common::{Exit, fork_child, kill, wait_pid, wait_until};
use shmkit::shared::{AtomicClaim, Claim, ClaimMut};
use shmkit::sync::{AcquireError, LockError, RobustSemaphore, RwLock, ShmSafe};
use shmkit::{ClaimError, Rows, SharedArray, SharedObject, SharedValue};

/// Claim slots of the arrays under test: every mode runs several times as many rounds.
const SLOTS: usize = 6;
const ROUNDS: usize = 4 * SLOTS;
const ROW: usize = 2;
/// Rounds of the value test: its readers hold their claim a small part of the time.
const ROUNDS_VALUE: usize = 1500;
const WAIT: Duration = Duration::from_secs(10);

/// What a child claims and holds until it is killed, in round `i`.
#[derive(Clone, Copy, Debug)]
enum How {
    Atomics,
    Shared,
    ExclusiveDisjoint,
    Rows,
    RowsMutDisjoint,
}

const ALL: [How; 5] = [How::Atomics, How::Shared, How::ExclusiveDisjoint, How::Rows, How::RowsMutDisjoint];

/// A live claim of any mode.
#[allow(dead_code)] // held for their drop only
enum Held<'a> {
    Atomic(AtomicClaim<'a, AtomicU64>),
    Shared(Claim<'a, u64>),
    Exclusive(ClaimMut<'a, u64>),
}

/// Claim in `how` for round `i`: row `i` for the exclusive modes, the whole array for the
/// sharing ones.
fn take(a: &SharedArray<u64>, how: How, i: usize) -> Result<Held<'_>, ClaimError> {
    Ok(match how {
        How::Atomics => Held::Atomic(a.atomics(..)?),
        How::Shared => Held::Shared(a.claim(..)?),
        How::ExclusiveDisjoint => Held::Exclusive(a.claim_mut(i * ROW..(i + 1) * ROW)?),
        How::Rows => Held::Shared(a.claim(Rows(..))?),
        How::RowsMutDisjoint => Held::Exclusive(a.claim_mut(Rows(i..i + 1))?),
    })
}

/// Fork a child that takes a claim with `claim`, sets `flag` to `token` while holding it,
/// and waits to be killed (exit code 20: `TableFull`, 21: another error). Returns its pid
/// once it holds the claim; panics with its exit status if it could not claim.
#[must_use]
fn child_holding<'a, G>(flag: &AtomicU32, token: u32, claim: impl FnOnce() -> Result<G, ClaimError> + 'a) -> Child {
    let child = Child({
        let _turn = common::serial_for_locks();
        fork_child(|| match claim() {
            Ok(_held) => {
                flag.store(token, Ordering::SeqCst);
                loop {
                    // SAFETY: pause has no preconditions; the parent kills us.
                    unsafe { libc::pause() };
                }
            }
            Err(ClaimError::TableFull { .. }) => 20,
            Err(_) => 21,
        })
    });
    let pid = child.0;
    let mut ended = None;
    wait_until("the child to claim", WAIT, || {
        if flag.load(Ordering::SeqCst) == token {
            return true;
        }
        let mut status = 0;
        // SAFETY: waitpid on our own child, without blocking.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
            ended = Some(status);
            return true;
        }
        false
    });
    if let Some(status) = ended {
        std::mem::forget(child); // reaped
        panic!("claim {token}: the child could not claim (exit status {status:#x}; 0x1400 = TableFull)");
    }
    child
}

fn kill_and_reap(pid: libc::pid_t) {
    kill(pid, libc::SIGKILL);
    assert_eq!(wait_pid(pid, WAIT), Exit::Signal(libc::SIGKILL));
}

/// A child killed and reaped when the test ends, also when it fails first.
struct Child(libc::pid_t);

impl Drop for Child {
    fn drop(&mut self) {
        // SAFETY: our own child (or, once reaped, no process of ours: ESRCH/ECHILD).
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}

#[test]
fn slots_of_killed_holders_are_reclaimed_in_every_claim_mode() {
    let me = std::process::id();
    let flags = SharedArray::<u32>::anonymous(1).unwrap();
    let flags = flags.atomics(..).unwrap();
    let flag = &flags[0];
    for how in ALL {
        let a = SharedArray::<u64>::create_with(&Default::default(), None, [ROUNDS + 2, ROW], SLOTS).unwrap();
        // A child alive the whole time, holding a claim in this mode (on row ROUNDS for
        // the exclusive modes): it must never be freed.
        let live = child_holding(flag, u32::MAX, || take(&a, how, ROUNDS));
        // A thread of this process abandons a claim on the last row: refused for ever.
        let last = ROUNDS + 1;
        std::thread::scope(|s| {
            s.spawn(|| match how {
                How::Atomics => std::mem::forget(a.atomics(last * ROW..).unwrap()),
                How::Shared | How::Rows => std::mem::forget(a.claim(Rows(last..)).unwrap()),
                _ => std::mem::forget(a.claim_mut(Rows(last..)).unwrap()),
            })
            .join()
            .unwrap()
        });
        // Many more short-lived holders than slots, each killed while holding its claim.
        for i in 0..ROUNDS {
            let dead = child_holding(flag, i as u32 + 1, || take(&a, how, i));
            kill_and_reap(dead.0);
        }
        // The dead holders' slots are not in use; the live child's and the abandoned one are.
        assert_eq!(a.claim_slots().unwrap(), (2, SLOTS), "{how:?}");
        // Every other slot can be claimed again, in the same mode, by this process.
        let mine: Vec<_> = (0..SLOTS - 2).map(|i| take(&a, how, i)).collect::<Result<_, _>>().unwrap();
        assert_eq!(a.claim_slots().unwrap(), (SLOTS, SLOTS), "{how:?}");
        assert!(matches!(take(&a, how, SLOTS), Err(ClaimError::TableFull { .. })), "{how:?}");
        drop(mine);
        // The live child's claim is still in force, and so is the abandoned one.
        let r = a.try_claim_mut(ROUNDS * ROW..(ROUNDS + 1) * ROW).err();
        assert!(matches!(r, Some(ClaimError::Conflict { holder, .. }) if holder == live.0 as u32), "{how:?}: {r:?}");
        let r = a.try_claim_mut(last * ROW..).err();
        assert!(matches!(r, Some(ClaimError::Abandoned { pid, .. }) if pid == me), "{how:?}: {r:?}");
        kill_and_reap(live.0);
        assert_eq!(a.claim_slots().unwrap(), (1, SLOTS), "{how:?}: only the abandoned claim is left");
    }
}

/// `SharedValue::get` takes a shared claim for a moment: readers killed at random in it
/// must not use up the value's claim slots.
#[test]
fn readers_of_a_value_killed_at_random_never_use_up_its_slots() {
    let v = SharedValue::<u64>::anonymous(7).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(std::process::id());
    for round in 0..ROUNDS_VALUE {
        let pid = {
            let _turn = common::serial_for_locks();
            Child(fork_child(|| {
                loop {
                    match v.get() {
                        Ok(7) => {}
                        Ok(_) => return 22,
                        Err(ClaimError::TableFull { .. }) => return 20,
                        Err(_) => return 21,
                    }
                }
            }))
        };
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_micros(20 + seed % 200));
        kill(pid.0, libc::SIGKILL);
        match wait_pid(pid.0, WAIT) {
            Exit::Signal(libc::SIGKILL) => {}
            other => panic!("round {round}: a reader ended with {other:?} (Code(20): TableFull)"),
        }
    }
    assert_eq!(v.get().unwrap(), 7);
    *v.lock().unwrap() = 8;
    assert_eq!(v.get().unwrap(), 8);
}

/// The other per-holder slot tables: `RwLock` reader slots and `RobustSemaphore` permits.
/// Their holders are killed many more times than there are slots; every new reader or
/// acquirer must still find one (they reclaim dead holders' slots on every scan).
#[test]
fn reader_slots_and_robust_permits_of_killed_holders_come_back() {
    #[repr(C)]
    struct Locks {
        rw: RwLock<u64, 2>,
        sem: RobustSemaphore<2>,
    }
    // SAFETY: #[repr(C)], made only of ShmSafe fields.
    unsafe impl ShmSafe for Locks {}
    let obj = SharedObject::<Locks>::anonymous(|_| {}).unwrap();
    let flags = SharedArray::<u32>::anonymous(1).unwrap();
    let flags = flags.atomics(..).unwrap();
    // A live reader and a live permit holder throughout: one slot of each stays taken.
    let live = {
        let _turn = common::serial_for_locks();
        Child(fork_child(|| {
            let (_r, _p) = (obj.rw.read().unwrap(), obj.sem.acquire().unwrap());
            flags[0].store(u32::MAX, Ordering::SeqCst);
            loop {
                // SAFETY: pause has no preconditions; the parent kills us.
                unsafe { libc::pause() };
            }
        }))
    };
    wait_until("the live holder", WAIT, || flags[0].load(Ordering::SeqCst) == u32::MAX);
    for i in 1..=ROUNDS as u32 {
        let child = {
            let _turn = common::serial_for_locks();
            Child(fork_child(|| {
                let Ok(_r) = obj.rw.read_timeout(WAIT) else { return 20 };
                let Ok(_p) = obj.sem.acquire_timeout(WAIT) else { return 21 };
                flags[0].store(i, Ordering::SeqCst);
                loop {
                    // SAFETY: as above.
                    unsafe { libc::pause() };
                }
            }))
        };
        wait_until("the holder", WAIT, || flags[0].load(Ordering::SeqCst) == i);
        kill_and_reap(child.0);
    }
    assert!(matches!(obj.rw.try_write(), Err(AcquireError::Lock(LockError::WouldBlock))), "the live reader reads");
    drop(obj.rw.read_timeout(WAIT).unwrap());
    let p = obj.sem.acquire_timeout(WAIT).unwrap();
    assert!(matches!(obj.sem.try_acquire(), Err(LockError::WouldBlock)), "the live holder keeps its permit");
    drop(p);
    kill_and_reap(live.0);
    drop(obj.rw.write_timeout(WAIT).unwrap());
}
