//! SharedArray / SharedValue / SharedAtomic across real processes: disjoint claims,
//! conflicts, robustness against a killed claimant, atomics, guarded values.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Exit, fork_child, spawn_role, wait_child, wait_pid, wait_until};
use shmkit::{ClaimError, SegmentOptions, SharedArray, SharedAtomic, SharedValue};

const NAME_VAR: &str = "SHMKIT_TEST_SEGMENT";
const FLAG_VAR: &str = "SHMKIT_TEST_FLAG";
const RANGE_VAR: &str = "SHMKIT_TEST_RANGE";

fn fill_value(i: usize) -> u64 {
    (i as u64) * 3 + 1
}

/// Entry point of re-executed children.
#[test]
#[ignore = "child process role, run by the other tests"]
fn child_role() {
    let Some(role) = common::role() else { return };
    let a = SharedArray::<u64>::open(&std::env::var(NAME_VAR).unwrap()).unwrap();
    let range = std::env::var(RANGE_VAR).unwrap();
    let (s, e) = range.split_once("..").unwrap();
    let (s, e): (usize, usize) = (s.parse().unwrap(), e.parse().unwrap());
    match role.as_str() {
        "fill" => {
            let mut mine = a.claim_mut(s..e).unwrap();
            for (k, x) in mine.iter_mut().enumerate() {
                *x = fill_value(s + k);
            }
        }
        "hold" => {
            let flag = SharedAtomic::<u32>::open(&std::env::var(FLAG_VAR).unwrap()).unwrap();
            let mut mine = a.claim_mut(s..e).unwrap();
            mine.fill(99);
            flag.store(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(30)); // until killed
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn parent_forked_child_and_exec_child_fill_disjoint_ranges() {
    let _serial = common::serial();
    let a = SharedArray::<u64>::create(None, 3000).unwrap();
    let name = a.name().unwrap().to_owned();
    // The parent holds its own range for the whole time the children write theirs.
    let mut mine = a.claim_mut(0..1000).unwrap();
    let forked = fork_child(|| {
        let a = SharedArray::<u64>::open(&name).unwrap();
        let mut r = a.claim_mut(1000..2000).unwrap();
        for (k, x) in r.iter_mut().enumerate() {
            *x = fill_value(1000 + k);
        }
        0
    });
    let mut execd = spawn_role("child_role", "fill", &[(NAME_VAR, &name), (RANGE_VAR, "2000..3000")]);
    for (k, x) in mine.iter_mut().enumerate() {
        *x = fill_value(k);
    }
    drop(mine);
    assert_eq!(wait_pid(forked, Duration::from_secs(20)), Exit::Code(0));
    assert_eq!(wait_child(&mut execd, Duration::from_secs(20)), Exit::Code(0));
    let all = a.copy_to_vec().unwrap();
    assert!(all.iter().enumerate().all(|(i, &x)| x == fill_value(i)));
}

#[test]
fn overlapping_claims_conflict_and_a_killed_claimant_is_recovered() {
    let a = SharedArray::<u64>::create(None, 1000).unwrap();
    let flag = SharedAtomic::<u32>::create(None, 0).unwrap();
    let mut child = spawn_role(
        "child_role",
        "hold",
        &[(NAME_VAR, a.name().unwrap()), (FLAG_VAR, flag.name().unwrap()), (RANGE_VAR, "0..100")],
    );
    wait_until("the child's claim", Duration::from_secs(10), || flag.load(Ordering::SeqCst) == 1);
    assert!(matches!(a.try_claim_mut(50..60), Err(ClaimError::Conflict { start: 50, end: 60, .. })));
    assert!(matches!(a.try_claim(99..101), Err(ClaimError::Conflict { .. })), "readers wait for writers");
    let t = Instant::now();
    assert!(matches!(a.claim_mut_timeout(0..1, Duration::from_millis(100)), Err(ClaimError::Timeout { .. })));
    assert!(t.elapsed() >= Duration::from_millis(100));
    a.try_claim_mut(100..1000).unwrap().fill(5); // disjoint: granted
    child.kill().unwrap();
    wait_child(&mut child, Duration::from_secs(10));
    let t = Instant::now();
    let recovered = a.claim_mut_timeout(0..100, Duration::from_secs(1)).expect("dead claimant's range is freed");
    assert!(t.elapsed() < Duration::from_secs(1));
    assert!(recovered.iter().all(|&x| x == 99), "the dead child's writes are visible");
}

#[test]
fn atomic_views_add_up_across_processes() {
    let _serial = common::serial();
    let a = SharedArray::<u64>::anonymous(4).unwrap();
    let kids: Vec<_> = (0..2)
        .map(|_| {
            fork_child(|| {
                let v = a.atomics(..).unwrap();
                for _ in 0..20_000 {
                    v[1].fetch_add(1, Ordering::Relaxed);
                }
                0
            })
        })
        .collect();
    for k in kids {
        assert_eq!(wait_pid(k, Duration::from_secs(20)), Exit::Code(0));
    }
    assert_eq!(a.copy_to_vec().unwrap(), [0, 40_000, 0, 0]);
}

#[test]
fn guarded_values_and_atomics_are_exact_across_processes() {
    let _serial = common::serial();
    let v = SharedValue::<u64>::anonymous(0).unwrap();
    let c = SharedAtomic::<u64>::anonymous(0).unwrap();
    let named = SharedValue::<f64>::create(None, 0.5).unwrap();
    let name = named.name().unwrap().to_owned();
    let kids: Vec<_> = (0..2)
        .map(|_| {
            fork_child(|| {
                let by_name = SharedValue::<f64>::open(&name).unwrap();
                for _ in 0..2_000 {
                    *v.lock().unwrap() += 1;
                    c.fetch_add(1, Ordering::Relaxed);
                    by_name.update(|x| *x += 1.0).unwrap();
                }
                0
            })
        })
        .collect();
    for k in kids {
        assert_eq!(wait_pid(k, Duration::from_secs(30)), Exit::Code(0));
    }
    assert_eq!(v.get().unwrap(), 4_000);
    assert_eq!(c.load(Ordering::Relaxed), 4_000);
    assert_eq!(named.get().unwrap(), 4_000.5);
}

#[test]
fn claim_rules_within_one_process() {
    let a = SharedArray::<u32>::create_with(&SegmentOptions::new(), None, 100, 3).unwrap();
    let r1 = a.claim(0..50).unwrap();
    let r2 = a.try_claim(10..20).unwrap(); // readers share
    assert!(matches!(a.try_claim_mut(0..1), Err(ClaimError::WouldDeadlock { .. })), "own reader");
    assert!(matches!(a.atomics(40..60), Err(ClaimError::WouldDeadlock { .. })));
    let w = a.try_claim_mut(50..100).unwrap();
    assert!(matches!(a.try_claim(99..100), Err(ClaimError::WouldDeadlock { .. })));
    assert!(matches!(a.try_claim(60..70), Err(ClaimError::WouldDeadlock { .. })));
    drop(w);
    let r3 = a.try_claim(60..70).unwrap();
    assert!(matches!(a.try_claim(80..90), Err(ClaimError::TableFull { capacity: 3 })));
    assert!(matches!(a.claim(0..101), Err(ClaimError::OutOfBounds { .. })));
    assert!(matches!(a.claim(5..5), Err(ClaimError::OutOfBounds { .. })));
    assert_eq!((r1.range(), r2.len()), (0..50, 10));
    drop((r1, r2));
    // A whole-array write while this thread still reads must report, not hang.
    assert!(matches!(a.write(), Err(ClaimError::WouldDeadlock { .. })));
    drop(r3);
    a.write().unwrap().fill(1);
    assert_eq!(a.copy_to_vec().unwrap(), vec![1; 100]);
}

/// The state word of the claim table's lock (control-block offset 32, right after the
/// 128-byte header).
fn table_lock_state(a: &SharedArray<u64>) -> &std::sync::atomic::AtomicU32 {
    let h = a.segment().header().unwrap().clone();
    let word = a.segment().as_ptr().wrapping_sub(h.payload_offset as usize).wrapping_add(128 + 32).cast::<u32>();
    // SAFETY: in bounds of the mapping (which `a` keeps alive) and 4-aligned; the lazy
    // mutex only ever accesses its state word atomically.
    unsafe { std::sync::atomic::AtomicU32::from_ptr(word) }
}

#[test]
fn a_claim_table_lock_whose_initialiser_died_is_taken_over_at_once() {
    let a = SharedArray::<u64>::create(None, 16).unwrap();
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    // A process claimed the lock's one-time initialisation, then died.
    table_lock_state(&a).store(0x8000_0000 | pid, Ordering::SeqCst);
    let t = Instant::now();
    let mut w = a.claim_mut(0..16).expect("the dead initialiser is replaced");
    assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());
    w.fill(3);
    drop(w);
    assert_eq!(a.copy_to_vec().unwrap(), vec![3; 16]);
}

#[test]
fn a_claim_table_lock_whose_initialiser_lives_is_never_reinitialised() {
    let a = SharedArray::<u64>::create(None, 16).unwrap();
    let mut live = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let pid = live.id();
    table_lock_state(&a).store(0x8000_0000 | pid, Ordering::SeqCst);
    let t = Instant::now();
    let r = a.try_claim_mut(0..16).err();
    assert!(matches!(r, Some(ClaimError::TableBusy { holder }) if holder == pid), "{r:?}");
    assert!(t.elapsed() < Duration::from_millis(60), "try took {:?}", t.elapsed());
    let t = Instant::now();
    let r = a.claim_timeout(0..16, Duration::from_millis(200)).err();
    assert!(matches!(r, Some(ClaimError::TableBusy { holder }) if holder == pid), "{r:?}");
    assert!(t.elapsed() < Duration::from_millis(250), "timed claim took {:?}", t.elapsed());
    assert_eq!(table_lock_state(&a).load(Ordering::SeqCst), 0x8000_0000 | pid, "not taken over");
    live.kill().unwrap();
    live.wait().unwrap();
    drop(a.claim_mut_timeout(0..16, Duration::from_secs(5)).expect("taken over once the initialiser ended"));
}

#[test]
fn zeroing_the_first_table_word_of_a_live_table_grants_nothing_twice() {
    // The first control-block word was the table's init flag; a peer that resets it must
    // not make a held exclusive claim grantable again.
    let a = SharedArray::<u64>::create(None, 16).unwrap();
    let held = a.claim_mut(0..8).unwrap();
    let h = a.segment().header().unwrap().clone();
    let first = a.segment().as_ptr().wrapping_sub(h.payload_offset as usize).wrapping_add(128).cast::<u32>();
    // SAFETY: in bounds and aligned, as above.
    unsafe { std::sync::atomic::AtomicU32::from_ptr(first) }.store(0, Ordering::SeqCst);
    std::thread::scope(|s| {
        s.spawn(|| {
            let r = a.try_claim_mut(0..8).err();
            assert!(matches!(r, Some(ClaimError::Conflict { .. })), "{r:?}");
        });
    });
    drop(held);
}
