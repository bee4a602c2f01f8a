//! `Process` with real child processes: results, panics, signals, timeouts, fork safety.
//!
//! The fork server starts before libtest's threads exist, so every test here may spawn
//! from a multi-threaded process (`StartMethod::Auto` picks the server).

mod common;

use std::time::{Duration, Instant};

use shmkit::process::{ExitStatus, Process, ProcessBuilder, ProcessError, StartMethod};

shmkit::fork_server_at_load!();

const T: Duration = Duration::from_secs(10);

#[test]
fn result_comes_back() {
    let mut p = Process::spawn(|x: [u64; 4]| x.iter().sum::<u64>(), [1, 2, 3, 4]).unwrap();
    assert_eq!(p.join_timeout(T).unwrap(), 10);
    assert_eq!(p.exit_status().unwrap(), Some(ExitStatus::Code(0)));
    assert!(!p.is_alive());
    // Joining again gives the same result.
    assert_eq!(p.join_timeout(T).unwrap(), 10);
}

#[test]
fn panic_message_is_reported() {
    let mut p = Process::spawn(|n: u32| -> u32 { panic!("bad input {n}") }, 7).unwrap();
    match p.join_timeout(T) {
        Err(ProcessError::Panicked { pid, message }) => {
            assert_eq!(pid, p.pid());
            assert!(message.contains("bad input 7"), "{message}");
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn kill_is_reported_with_the_signal() {
    let mut p = Process::spawn(sleep_ms, 60_000).unwrap();
    assert!(p.is_alive());
    let timeout = p.join_timeout(Duration::from_millis(20));
    assert!(matches!(timeout, Err(ProcessError::Timeout { .. })), "{timeout:?}");
    p.kill().unwrap();
    let start = Instant::now();
    match p.join_timeout(T) {
        Err(ProcessError::Killed { pid, signal }) => {
            assert_eq!(pid, p.pid());
            assert_eq!(signal, libc::SIGKILL);
        }
        other => panic!("expected Killed, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(p.exit_status().unwrap(), Some(ExitStatus::Signal(libc::SIGKILL)));
}

#[test]
fn terminate_sends_sigterm() {
    let mut p = Process::spawn(sleep_ms, 60_000).unwrap();
    p.terminate().unwrap();
    assert!(matches!(p.join_timeout(T), Err(ProcessError::Killed { signal: libc::SIGTERM, .. })));
}

#[test]
fn exit_without_result_is_reported() {
    let mut p = Process::spawn(|code: i32| -> u8 { std::process::exit(code) }, 3).unwrap();
    assert!(matches!(p.join_timeout(T), Err(ProcessError::Exited { code: 3, .. })));
}

#[test]
fn drop_kills_a_running_child() {
    let p = Process::spawn(sleep_ms, 60_000).unwrap();
    let pid = p.pid();
    drop(p);
    // Reaped by its parent (the fork server) and gone.
    common::wait_until("the child to disappear", T, || !std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn auto_uses_the_fork_server_when_threads_exist() {
    // libtest runs this test on a thread of its own: the process has several threads.
    assert!(shmkit::process::thread_count().unwrap() > 1);
    assert!(shmkit::process::fork_server::is_running());
    let mut p = ProcessBuilder::new().start_method(StartMethod::ForkServer).spawn(|x: i64| -x, 5).unwrap();
    assert_eq!(p.join_timeout(T).unwrap(), -5);
    let mut p = Process::spawn(|x: i64| x + 1, 5).unwrap();
    assert_eq!(p.join_timeout(T).unwrap(), 6);
}

#[test]
fn many_children_at_once() {
    let mut ps: Vec<_> = (0..16u64).map(|i| Process::spawn(|x: u64| x * 2, i).unwrap()).collect();
    let sum: u64 = ps.iter_mut().map(|p| p.join_timeout(T).unwrap()).sum();
    assert_eq!(sum, 2 * (0..16).sum::<u64>());
}

/// Direct fork from a fresh process: a re-executed copy of this binary that forks as its very
/// first action would (libtest's main thread waits, holding nothing), with `force_fork`.
#[test]
fn direct_fork_in_a_fresh_process() {
    let mut child = common::spawn_role("direct_fork_role", "fork", &[]);
    assert_eq!(common::wait_child(&mut child, T), common::Exit::Code(0));
}

#[test]
#[ignore]
fn direct_fork_role() {
    if common::role().is_none() {
        return;
    }
    // `StartMethod::Fork` alone refuses: libtest's main thread exists.
    let e = ProcessBuilder::new().start_method(StartMethod::Fork).spawn(|x: u32| x + 1, 41).unwrap_err();
    assert!(matches!(e, ProcessError::ThreadsExist { .. }), "{e:?}");
    // SAFETY: the only other thread is libtest's main thread, which waits for this test on a
    // channel and holds no lock the children take; they do not print.
    let forced = || unsafe { ProcessBuilder::new().force_fork() };
    let mut p = forced().spawn(|x: u32| x + 1, 41).unwrap();
    assert_eq!(p.join_timeout(T).unwrap(), 42);
    let mut p = forced().spawn(sleep_ms, 60_000).unwrap();
    p.kill().unwrap();
    assert!(matches!(p.join_timeout(T), Err(ProcessError::Killed { signal: libc::SIGKILL, .. })));
}

#[test]
fn a_fork_is_refused_while_this_thread_holds_a_lock() {
    // The child would inherit a copy of the guard (reachable from a thread-local or a
    // leaked static) and with it a second `&mut` to the data.
    let m = shmkit::SharedObject::<shmkit::Mutex<u64>>::anonymous(|_| {}).unwrap();
    let guard = m.lock().unwrap();
    let e = ProcessBuilder::new().start_method(StartMethod::Fork).spawn(|x: u32| x + 1, 41).unwrap_err();
    assert!(matches!(e, ProcessError::LocksHeld), "{e}");
    // The fork server's child starts from an early snapshot: no guard to inherit.
    let mut p = ProcessBuilder::new().start_method(StartMethod::Auto).spawn(|x: u32| x + 1, 41).unwrap();
    assert_eq!(p.join_timeout(std::time::Duration::from_secs(10)).unwrap(), 42);
    drop(guard);
}
