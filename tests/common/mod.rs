//! Cross-process test support: fork and re-exec children, wait with timeouts, check leaks.
//!
//! Two ways to get a real second process:
//! - [`fork_child`]: the child runs a closure and `_exit`s. Only use it where the closure
//!   touches no std locks another test thread may hold (no stdout; allocation is fine,
//!   glibc's fork resets malloc). Tests that fork run one at a time via [`serial`].
//! - [`spawn_role`]: re-executes this test binary, running one `#[ignore]`d test that reads
//!   its role from the environment: a fresh process, safe from a multi-threaded parent.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Hold this while forking so no other test of this binary forks or runs at the same time.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Fork; the child runs `f` and exits with its return value (101 on panic).
pub fn fork_child(f: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: fork has no memory-safety preconditions; the child only runs `f` and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        // SAFETY: _exit never returns and skips atexit handlers and destructors of the parent's state.
        unsafe { libc::_exit(code) };
    }
    pid
}

fn decode(status: libc::c_int) -> Exit {
    if libc::WIFEXITED(status) { Exit::Code(libc::WEXITSTATUS(status)) } else { Exit::Signal(libc::WTERMSIG(status)) }
}

/// Wait for a forked child; SIGKILL it and panic after `timeout`.
pub fn wait_pid(pid: libc::pid_t, timeout: Duration) -> Exit {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: plain waitpid on our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return decode(status);
        }
        assert!(r == 0, "waitpid failed: {}", std::io::Error::last_os_error());
        if start.elapsed() > timeout {
            kill(pid, libc::SIGKILL);
            // SAFETY: reap the child we just killed.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            panic!("child {pid} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Send `sig` to `pid`.
pub fn kill(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) };
}

/// The environment variable a re-executed child reads its role from.
pub const ROLE_VAR: &str = "SHMKIT_TEST_ROLE";

/// The role this process was started with, if it is a re-executed child.
pub fn role() -> Option<String> {
    std::env::var(ROLE_VAR).ok()
}

/// Re-execute this test binary to run the `#[ignore]`d test `test` with `ROLE_VAR=role`
/// and extra environment. Output is inherited, so the child's failures show in the log.
pub fn spawn_role(test: &str, role: &str, env: &[(&str, &str)]) -> Child {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE_VAR, role)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn test child")
}

/// Wait for a re-executed child; kill it and panic after `timeout`.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Exit {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            use std::os::unix::process::ExitStatusExt;
            return match (st.code(), st.signal()) {
                (Some(c), _) => Exit::Code(c),
                (None, Some(s)) => Exit::Signal(s),
                _ => Exit::Code(-1),
            };
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {} did not finish within {timeout:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Poll `cond` every millisecond until it holds; panic after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A unique segment name for a test: `/shmkit-test-<tag>-<pid>-<n>`.
pub fn unique_name(tag: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("/shmkit-test-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Whether `/dev/shm` still holds `name`.
pub fn exists(name: &str) -> bool {
    std::path::Path::new(&format!("/dev/shm/{}", name.trim_start_matches('/'))).exists()
}

/// A file written by hand into /dev/shm under a unique test name, removed on drop.
pub struct ShmFile(pub String);

impl ShmFile {
    /// Write `bytes` as `/dev/shm/shmkit-test-<tag>-…`.
    pub fn new(tag: &str, bytes: &[u8]) -> Self {
        let name = unique_name(tag);
        std::fs::write(format!("/dev/shm{name}"), bytes).expect("write /dev/shm file");
        ShmFile(name)
    }
}

impl Drop for ShmFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/dev/shm{}", self.0));
    }
}

/// Wait until our child `pid` has stopped (SIGSTOP, or a test hook that stops it); panic
/// after 20 s or if it ended instead.
pub fn wait_stopped(pid: libc::pid_t) {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child; WUNTRACED reports stops without reaping.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED | libc::WNOHANG) };
        if r == pid {
            assert!(libc::WIFSTOPPED(status), "child {pid} ended instead of stopping: {status:#x}");
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "child {pid} never stopped");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Hold while forking a child that uses shmkit locks: one fork at a time (see [`serial`]),
/// and this thread's held-lock record registered first, so the child's first lock takes no
/// std lock another test thread may hold.
pub fn serial_for_locks() -> MutexGuard<'static, ()> {
    let turn = serial();
    drop(shmkit::sync::Mutex::new(()).lock());
    turn
}

/// Run `f` in a forked child (see [`serial_for_locks`]) and expect it to exit with 0
/// within 10 s.
pub fn in_child(f: impl FnOnce() -> i32) {
    let _turn = serial_for_locks();
    let pid = fork_child(f);
    assert_eq!(wait_pid(pid, Duration::from_secs(10)), Exit::Code(0));
}
