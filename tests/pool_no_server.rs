//! Without a fork server, `StartMethod::Auto` in a multi-threaded process refuses to fork
//! and says how to fix it (this test binary deliberately does not start the server).

use shmkit::pool::{Pool, PoolError};
use shmkit::process::{Process, ProcessBuilder, ProcessError, StartMethod};

#[test]
fn auto_refuses_to_fork_from_threads_and_says_what_to_do() {
    assert!(shmkit::process::thread_count().unwrap() > 1); // libtest's threads
    assert!(!shmkit::process::fork_server::is_running());
    let e = Pool::new(1).unwrap_err();
    assert!(matches!(e, PoolError::Process(ProcessError::ThreadsExist { .. })), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("fork_server::start()") && msg.contains("fork_server_at_load!"), "{msg}");
    assert!(matches!(Process::spawn(|x: u8| x, 1), Err(ProcessError::ThreadsExist { .. })));
    let e = ProcessBuilder::new().start_method(StartMethod::ForkServer).spawn(|x: u8| x, 1).unwrap_err();
    assert!(matches!(e, ProcessError::NoForkServer));
    // Starting the server now is refused too: it is too late in this process.
    assert!(matches!(shmkit::process::fork_server::start(), Err(ProcessError::ThreadsExist { .. })));
}
