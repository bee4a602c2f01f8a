//! SharedList: against a Vec model, limits and type checks, processes sharing one list, and
//! SIGKILLs (also exactly inside a journalled `set`) that must leave it consistent.

mod common;

use std::time::{Duration, Instant};

use common::{Exit, fork_child, serial, wait_pid};
use shmkit::manager::{ManagerError, SharedList};
use shmkit::{Element, SharedArray, testing};

#[test]
fn matches_a_vec_model() {
    let l = SharedList::<i64>::anonymous(5).unwrap();
    let mut model: Vec<i64> = Vec::new();
    let mut x = 1u64;
    for step in 0..5000i64 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let i = (x >> 33) as usize % 7;
        match (x >> 60) % 6 {
            0 | 1 => {
                let r = l.push(step);
                if model.len() < 5 {
                    r.unwrap();
                    model.push(step);
                } else {
                    assert!(matches!(r, Err(ManagerError::Full { what: "list", capacity: 5 })), "{r:?}");
                }
            }
            2 => assert_eq!(l.pop().unwrap(), model.pop()),
            3 => match model.get_mut(i) {
                Some(v) => assert_eq!(l.set(i, -step).unwrap(), std::mem::replace(v, -step)),
                None => assert!(matches!(l.set(i, 0), Err(ManagerError::OutOfBounds { .. }))),
            },
            4 => match model.get_mut(i) {
                Some(v) => {
                    *v = *v * 2 + 1;
                    assert_eq!(l.update(i, |e| e * 2 + 1).unwrap(), *v);
                }
                None => assert!(l.update(i, |e| e).is_err()),
            },
            _ => assert_eq!(l.get(i).ok(), model.get(i).copied()),
        }
        assert_eq!(l.len().unwrap(), model.len());
    }
    assert_eq!(l.snapshot().unwrap(), model);
    l.clear().unwrap();
    assert!(l.is_empty().unwrap());
    assert_eq!(l.capacity(), 5);
}

#[test]
fn open_checks_types() {
    let l = SharedList::<u32>::create(None, 3).unwrap();
    let name = l.name().unwrap();
    SharedList::<u32>::open(name).unwrap().push(4).unwrap();
    assert_eq!(l.get(0).unwrap(), 4);
    assert!(matches!(SharedList::<i32>::open(name), Err(ManagerError::Segment(_))));
    assert!(matches!(shmkit::SharedDict::<str, u32>::open(name), Err(ManagerError::Segment(_))));
    assert!(matches!(SharedList::<u8>::anonymous(0), Err(ManagerError::Invalid { .. })));
    let e = l.get(5).unwrap_err();
    assert_eq!(e.to_string(), "index 5 is out of bounds for a shared list of length 1");
}

/// Wider than a word: `set` goes through the journal. All words are always equal.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
struct Wide([u64; 8]);

impl Element for Wide {
    const TYPE_NAME: &'static str = "list_basic::Wide";
}

const SLOTS: usize = 16;

/// Worker `w`: bump element `1 + (w + n) % (SLOTS - 1)` and the shared element 0, forever;
/// publish completed bumps in `done[w]`.
fn worker(l: &SharedList<Wide>, done: &SharedArray<u64>, w: usize) -> i32 {
    let Ok(counter) = done.atomics(w..w + 1) else { return 2 };
    for n in 0.. {
        let i = if n % 2 == 0 { 0 } else { 1 + (w + n) % (SLOTS - 1) };
        if l.update(i, |e| Wide(e.0.map(|x| x + 1))).is_err() {
            return 1;
        }
        counter[0].store(n as u64 + 1, std::sync::atomic::Ordering::Release);
    }
    0
}

/// The element each worker `w` touched in its first `n` bumps, summed.
fn expected(w: usize, n: u64) -> [u64; SLOTS] {
    let mut e = [0; SLOTS];
    for k in 0..n as usize {
        e[if k % 2 == 0 { 0 } else { 1 + (w + k) % (SLOTS - 1) }] += 1;
    }
    e
}

fn stopped(pid: libc::pid_t) -> bool {
    common::kill(pid, libc::SIGSTOP);
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED | libc::WNOHANG) };
        if r == pid {
            return libc::WIFSTOPPED(status);
        }
        assert!(r == 0 && start.elapsed() < Duration::from_secs(10), "worker {pid} did not stop");
    }
}

#[test]
fn kills_leave_the_list_consistent() {
    let _serial = serial();
    const WORKERS: usize = 3;
    const ROUNDS: usize = 30;
    const INCARNATIONS: usize = WORKERS * (ROUNDS + 1);
    let l = SharedList::<Wide>::anonymous(SLOTS).unwrap();
    for _ in 0..SLOTS {
        l.push(Wide([0; 8])).unwrap();
    }
    let done = SharedArray::<u64>::anonymous(INCARNATIONS).unwrap();
    let mut next_w = 0;
    let mut spawn = || {
        next_w += 1;
        (next_w - 1, fork_child(|| worker(&l, &done, next_w - 1)))
    };
    let mut live: Vec<(usize, libc::pid_t)> = (0..WORKERS).map(|_| spawn()).collect();
    let mut killed = vec![false; INCARNATIONS];
    let kill = |pid: libc::pid_t, w: usize, killed: &mut Vec<bool>| {
        common::kill(pid, libc::SIGKILL);
        assert_eq!(wait_pid(pid, Duration::from_secs(10)), Exit::Signal(libc::SIGKILL));
        killed[w] = true;
    };
    let mut precise = 0;
    let mut x = 7u64;
    for round in 0..ROUNDS {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        std::thread::sleep(Duration::from_micros(200 + (x >> 40) % 3000));
        if round % 2 == 0 {
            // Anywhere: one worker.
            let (w, pid) = live.swap_remove((x >> 33) as usize % live.len());
            kill(pid, w, &mut killed);
            live.push(spawn());
            continue;
        }
        // Inside a journalled `set`: stop every worker at a random moment until the journal
        // shows one in flight (its holder is one of them), then kill them all.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for &(_, pid) in &live {
                assert!(stopped(pid));
            }
            if testing::journal_in_flight(&l) || Instant::now() > deadline {
                precise += usize::from(testing::journal_in_flight(&l));
                break;
            }
            for &(_, pid) in &live {
                common::kill(pid, libc::SIGCONT);
            }
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            let pause = Instant::now() + Duration::from_nanos((x >> 40) % 50_000);
            while Instant::now() < pause {
                std::hint::spin_loop();
            }
        }
        for (w, pid) in std::mem::take(&mut live) {
            kill(pid, w, &mut killed);
        }
        // Repair now, so the next round's journal state is the new workers' own.
        l.len().unwrap();
        live = (0..WORKERS).map(|_| spawn()).collect();
    }
    for (w, pid) in std::mem::take(&mut live) {
        kill(pid, w, &mut killed);
    }
    let snap = l.snapshot().unwrap();
    assert_eq!(snap.len(), SLOTS);
    let counts = done.copy_to_vec().unwrap();
    let (mut lo, mut hi) = ([0u64; SLOTS], [0u64; SLOTS]);
    for (w, &n) in counts.iter().enumerate() {
        let (a, b) = (expected(w, n), expected(w, n + u64::from(killed[w])));
        for i in 0..SLOTS {
            lo[i] += a[i];
            hi[i] += b[i];
        }
    }
    for (i, e) in snap.iter().enumerate() {
        assert!(e.0.iter().all(|&x| x == e.0[0]), "element {i} is torn: {e:?}");
        assert!((lo[i]..=hi[i]).contains(&e.0[0]), "element {i} = {}, expected {}..={}", e.0[0], lo[i], hi[i]);
    }
    let stats = testing::stats(&l);
    eprintln!("{precise} kills inside a set; {} owner-died, {} rollbacks", stats.owner_died, stats.rollbacks);
    assert!(precise >= ROUNDS / 4, "only {precise} kills landed inside a set");
    // Every kill inside a `set` is rolled back; a random kill may land inside one too.
    assert!((precise as u64..=(precise + ROUNDS / 2) as u64).contains(&stats.rollbacks), "{stats:?}");
}
