//! The pool at its edges (issue 12): a failed batch call leaves nothing running, terminate()
//! tells every waiter `Terminated`, join() without close() has its own error, a forced fork
//! from a threaded process cannot hang a safe call, and timed calls keep their deadlines while
//! a worker or the manager is stopped (SIGSTOP).

mod common;

use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shmkit::SharedArray;
use shmkit::pool::{Pool, PoolError};
use shmkit::process::{ProcessError, StartMethod};

shmkit::fork_server_at_load!();

const T: Duration = Duration::from_secs(20);

/// How late a timed call may return after its deadline.
const SLACK: Duration = Duration::from_millis(50);

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// The failed call's kernel: chunk 0 kills its own worker at once; every third chunk is slow
/// (so one mailbox drains late); all write the marker 1.
fn kill_one_mark_others(start: usize, chunk: &mut [u64]) {
    if start == 0 {
        // SAFETY: raise has no memory-safety preconditions.
        unsafe { libc::raise(libc::SIGKILL) };
    }
    if (start / 16) % 3 == 1 {
        std::thread::sleep(Duration::from_millis(60));
    }
    chunk.fill(1);
}

fn mark_two(_: usize, chunk: &mut [u64]) {
    chunk.fill(2);
}

#[test]
fn a_failed_map_chunks_mut_leaves_nothing_running_that_could_overwrite_the_retry() {
    let pool = Pool::new(3).unwrap();
    let a = SharedArray::<u64>::create(None, 24 * 16).unwrap();
    for round in 0..8 {
        let r = pool.map_chunks_mut(&a, 16, kill_one_mark_others);
        assert!(matches!(r, Err(PoolError::WorkerDied { signal: libc::SIGKILL, .. })), "round {round}: {r:?}");
        if round % 2 == 0 {
            pool.map_chunks_mut(&a, 16, mark_two).unwrap();
        } else {
            // The retry done here, in one claim over the whole array (it waits for chunks
            // that hold claims): a queued chunk of the failed call that runs after this
            // overwrites it, whichever mailbox it sits in.
            a.claim_mut_timeout(.., T).unwrap().fill(2);
        }
        // Stragglers of the failed call would have written by now.
        std::thread::sleep(Duration::from_millis(800));
        let v = a.copy_to_vec().unwrap();
        let stale = v.iter().filter(|&&x| x != 2).count();
        assert_eq!(stale, 0, "round {round}: {stale} elements hold the failed call's values after the retry");
    }
}

/// A task argument: the counter's name, and the item's index (item 0 kills its worker).
type Arg = [u8; 72];

fn count_run(arg: Arg) -> u64 {
    if arg[71] == 0 {
        // SAFETY: raise has no memory-safety preconditions.
        unsafe { libc::raise(libc::SIGKILL) };
    }
    std::thread::sleep(Duration::from_millis(20));
    let name = std::str::from_utf8(&arg[1..1 + arg[0] as usize]).unwrap();
    let c = shmkit::SharedAtomic::<u64>::open(name).unwrap();
    c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    1
}

/// The `map` family has the same promise: after a failed `map` (or a dropped `imap`), none of
/// its chunks runs any more.
#[test]
fn a_failed_map_and_a_dropped_imap_leave_nothing_running() {
    let counter = shmkit::SharedAtomic::<u64>::create(None, 0).unwrap();
    let name = counter.name().unwrap().to_owned();
    let items: Vec<Arg> = (0..40u8)
        .map(|i| {
            let mut a = [0u8; 72];
            a[0] = name.len() as u8;
            a[1..1 + name.len()].copy_from_slice(name.as_bytes());
            a[71] = i;
            a
        })
        .collect();
    let runs = || counter.load(std::sync::atomic::Ordering::SeqCst);
    let pool = Pool::new(2).unwrap();
    for round in 0..3 {
        let r = pool.map_chunksize(count_run, items.clone(), 1);
        assert!(matches!(r, Err(PoolError::WorkerDied { .. })), "round {round}: {r:?}");
        let after_error = runs();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(after_error, runs(), "round {round}: the failed map's chunks kept running after it returned");

        let got: Result<Vec<u64>, PoolError> = pool.imap(count_run, items.clone(), 1).unwrap().collect();
        assert!(got.is_err(), "round {round}");
        let after_error = runs();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(after_error, runs(), "round {round}: the dropped imap's chunks kept running");
    }
}

#[test]
fn terminate_gives_every_waiter_terminated() {
    for round in 0..8 {
        let pool = std::sync::Arc::new(Pool::new(2).unwrap());
        let (tx, rx) = mpsc::channel();
        let err_tx = tx.clone();
        pool.apply_async_with(sleep_ms, 60_000, |_| {}, move |e| err_tx.send(format!("callback: {e:?}")).unwrap())
            .unwrap();
        let p = std::sync::Arc::clone(&pool);
        let map_tx = tx.clone();
        let mapper = std::thread::spawn(move || {
            let r = p.map_chunksize(sleep_ms, [60_000u64; 8], 1);
            map_tx.send(format!("map: {r:?}")).unwrap();
        });
        // A poller that asks again and again with a short timeout.
        let h = pool.apply_async(sleep_ms, 60_000).unwrap();
        let poll_tx = tx.clone();
        let poller = std::thread::spawn(move || {
            let start = Instant::now();
            loop {
                match h.get_timeout(Duration::from_millis(1)) {
                    Err(PoolError::Timeout { .. }) if start.elapsed() < T => continue,
                    r => break poll_tx.send(format!("poller: {r:?}")).unwrap(),
                }
            }
        });
        std::thread::sleep(Duration::from_millis(100));
        pool.terminate();
        let mut got: Vec<String> = (0..3).map(|_| rx.recv_timeout(T).expect("a waiter did not return")).collect();
        got.sort();
        for g in &got {
            assert!(g.ends_with("Err(Terminated)") || g.ends_with(": Terminated"), "round {round}: {got:?}");
        }
        mapper.join().unwrap();
        poller.join().unwrap();
    }
}

#[test]
fn join_without_close_has_its_own_error() {
    let pool = Pool::new(1).unwrap();
    for r in [pool.join(), pool.join_timeout(Duration::from_secs(1))] {
        let e = r.unwrap_err();
        assert!(matches!(e, PoolError::StillRunning), "join() without close() is no task failure: {e:?}");
        let msg = e.to_string();
        assert!(msg.contains("close()") && msg.contains("terminate()"), "{msg}");
    }
    // The pool still works, and close() + join() succeeds.
    assert_eq!(pool.apply(|x: u8| x + 1, 1).unwrap(), 2);
    pool.close();
    pool.join_timeout(T).unwrap();
}

/// Hold stdout from another thread, as a thread that prints may at any instant, until the
/// returned sender is dropped (libtest needs stdout back to report the result).
fn hold_stdout() -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(b"");
        tx.send(()).unwrap();
        let _ = done_rx.recv_timeout(Duration::from_secs(60));
    });
    rx.recv_timeout(T).unwrap();
    (done_tx, holder)
}

fn prints() {
    println!("worker ready");
}

/// `StartMethod::Fork` from a process whose threads print: a safe call must not hang.
#[test]
fn forced_fork_from_a_threaded_process_cannot_hang_a_safe_call() {
    let mut child = common::spawn_role("forced_fork_role", "forced-fork", &[]);
    assert_eq!(common::wait_child(&mut child, Duration::from_secs(30)), common::Exit::Code(0));
}

#[test]
#[ignore]
fn forced_fork_role() {
    if common::role().is_none() {
        return;
    }
    let (release, holder) = hold_stdout();
    // The safe API refuses to fork from this process (it has threads) and says what to do.
    let start = Instant::now();
    let r = Pool::builder()
        .processes(2)
        .start_method(StartMethod::Fork)
        .initializer(prints)
        .build()
        .and_then(|p| p.map(|x: u32| x + 1, 0..10u32));
    match r {
        Err(PoolError::Process(e @ ProcessError::ThreadsExist { .. })) => {
            assert!(e.to_string().contains("fork_server"), "{e}");
        }
        other => panic!("expected ThreadsExist, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    // The unsafe opt-in, with its contract broken on purpose (the initializer prints while
    // another thread holds stdout): the stuck worker is killed by the start-up bound and
    // the error names it and the cause.
    let start = Instant::now();
    // SAFETY: deliberately not upheld for stdout (this test shows the bound); nothing in
    // this process is left inconsistent by a child that deadlocks and is killed.
    let builder = unsafe { Pool::builder().processes(2).force_fork() };
    let r = builder.initializer(prints).start_timeout(Duration::from_millis(500)).build();
    let took = start.elapsed();
    match r {
        Err(ref e @ PoolError::StartTimeout { role: "worker", pid, waited }) => {
            let msg = e.to_string();
            assert!(msg.contains(&pid.to_string()) && msg.contains("fork server"), "{msg}");
            assert!(msg.contains("multi-threaded"), "{msg}");
            assert_eq!(waited, Duration::from_millis(500));
        }
        other => panic!("expected StartTimeout, got {other:?}"),
    }
    assert!(took < Duration::from_secs(5), "took {took:?}");
    drop(release);
    holder.join().unwrap();
}

/// Timed calls keep their deadlines while a worker and the manager are stopped.
#[test]
fn timed_calls_keep_their_deadlines_with_a_stopped_worker_and_manager() {
    let pool = std::sync::Arc::new(Pool::new(2).unwrap());
    let hs: Vec<_> = (0..4).map(|_| pool.apply_async(sleep_ms, 60_000).unwrap()).collect();
    let stopped: Vec<u32> = pool.worker_pids().into_iter().chain([pool.manager_pid()]).collect();
    let check = |what: &str, timeout: Duration, f: &dyn Fn(Duration) -> bool| {
        let start = Instant::now();
        let timed_out = f(timeout);
        let took = start.elapsed();
        assert!(took <= timeout + SLACK, "{what} took {took:?} for a {timeout:?} timeout");
        timed_out
    };
    // Stop the first worker, then the manager too.
    for (i, &pid) in stopped.iter().enumerate() {
        if i == 1 {
            continue;
        }
        common::kill(pid as i32, libc::SIGSTOP);
        for t in [0, 30, 150] {
            let t = Duration::from_millis(t);
            check("get_timeout", t, &|t| hs[0].get_timeout(t).is_err());
            check("ready", Duration::ZERO, &|_| hs[1].ready());
        }
    }
    // A terminate() on another thread (it has to kill the stopped manager) must not hold
    // back a timed wait on this one.
    let p = std::sync::Arc::clone(&pool);
    let killer = std::thread::spawn(move || p.terminate());
    std::thread::sleep(Duration::from_millis(20));
    for _ in 0..5 {
        check("get_timeout during terminate", Duration::from_millis(100), &|t| hs[2].get_timeout(t).is_err());
    }
    killer.join().unwrap();
    for &pid in &stopped {
        common::kill(pid as i32, libc::SIGCONT);
    }

    // join_timeout with a stopped worker still holding a task.
    let pool = Pool::new(2).unwrap();
    let h = pool.apply_async(sleep_ms, 100).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let pids = pool.worker_pids();
    pids.iter().for_each(|&p| common::kill(p as i32, libc::SIGSTOP));
    common::kill(pool.manager_pid() as i32, libc::SIGSTOP);
    pool.close();
    for t in [0, 50, 200] {
        let t = Duration::from_millis(t);
        let timed_out = check("join_timeout", t, &|t| matches!(pool.join_timeout(t), Err(PoolError::Timeout { .. })));
        assert!(timed_out);
    }
    drop(h);
    let start = Instant::now();
    drop(pool); // kills the stopped manager and workers
    assert!(start.elapsed() < Duration::from_secs(10));
}

/// `/proc/<pid>/status` RssAnon, in kB.
fn rss_anon_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status.lines().find(|l| l.starts_with("RssAnon:")).expect("RssAnon");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number")
}

/// A pool forked from a process whose heap holds much free memory: the manager gives that
/// back, so the workers it forks (a replacement after every crash or timeout) do not copy
/// the page tables of tens of megabytes each time.
#[test]
fn the_manager_does_not_carry_the_free_heap_of_the_pool_process() {
    let mut child = common::spawn_role("free_heap_role", "free-heap", &[]);
    assert_eq!(common::wait_child(&mut child, T), common::Exit::Code(0));
}

#[test]
#[ignore]
fn free_heap_role() {
    if common::role().is_none() {
        return;
    }
    // 64 MiB in blocks small enough to live on the heap, touched, then freed; `fence` stays
    // allocated above them so that free() alone cannot trim them away.
    let blocks: Vec<Vec<u8>> = (0..65_536).map(|i| vec![i as u8; 1000]).collect();
    let fence = vec![1u8; 1000];
    drop(blocks);
    // SAFETY: the only other thread is the test harness's, waiting for this test; it holds
    // no lock the manager or the workers take.
    let pool = unsafe { Pool::builder().processes(1).force_fork() }.build().unwrap();
    assert_eq!(pool.map(|x: u32| x + 1, 0..4u32).unwrap(), [1, 2, 3, 4]);
    let anon = rss_anon_kb(pool.manager_pid());
    assert!(anon < 16 << 10, "the manager holds {anon} kB of anonymous memory");
    drop(fence);
}
