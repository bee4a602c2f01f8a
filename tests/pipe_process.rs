//! Named pipes between unrelated processes: the child is this test binary re-executed,
//! opening the pipe by name. Ping-pong, clean exit seen as a hang-up, and a SIGKILLed peer
//! reported as disconnected instead of a wait without end.

mod common;

use std::time::{Duration, Instant};

use common::{Exit, role, serial, spawn_role, wait_child};
use shmkit::channel::{GetError, Pipe, PutError};

const LIMIT: Duration = Duration::from_secs(20);

/// The re-executed peer: opens the pipe by name and echoes until told to stop or hang.
#[test]
#[ignore = "child role of the pipe_process tests"]
fn pipe_child() {
    let Some(role) = role() else { return };
    let name = std::env::var("PIPE_NAME").expect("PIPE_NAME");
    let end = Pipe::open(&name).expect("open the pipe by name");
    match role.as_str() {
        "echo" => {
            while let Ok(m) = end.recv_timeout(LIMIT) {
                if m == b"bye" {
                    break;
                }
                end.send(&m).expect("echo");
            }
            std::process::exit(0); // no drop: the exit itself hangs up
        }
        "hang" => {
            end.send(b"ready").expect("send");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn ping_pong_then_exit_is_a_hangup() {
    let _s = serial();
    let a = Pipe::create(None, 4, 1024).unwrap();
    let name = a.name().unwrap().to_owned();
    let mut child = spawn_role("pipe_child", "echo", &[("PIPE_NAME", &name)]);
    for i in 0..1000u32 {
        let msg = i.to_le_bytes().repeat((i % 200) as usize + 1);
        a.send_timeout(&msg, LIMIT).unwrap();
        assert_eq!(a.recv_timeout(LIMIT).unwrap(), msg);
    }
    assert!(a.peer_connected());
    a.send(b"bye").unwrap();
    assert_eq!(wait_child(&mut child, LIMIT), Exit::Code(0));
    assert_eq!(a.recv_timeout(LIMIT), Err(GetError::Disconnected));
    assert!(!a.peer_connected());
    // Sends that have to wait for room see the hang-up too.
    let mut sent = 0;
    let err = loop {
        match a.send_timeout(b"x", LIMIT) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, PutError::Disconnected(b"x")), "{err:?}");
    assert!(sent <= 4);
    drop(a);
    assert!(!common::exists(&name));
}

#[test]
fn killed_peer_is_disconnected() {
    let _s = serial();
    let a = Pipe::create(None, 4, 64).unwrap();
    let name = a.name().unwrap().to_owned();
    let mut child = spawn_role("pipe_child", "hang", &[("PIPE_NAME", &name)]);
    assert_eq!(a.recv_timeout(LIMIT).unwrap(), b"ready");
    std::thread::scope(|s| {
        let waiter = s.spawn(|| a.recv_timeout(LIMIT));
        std::thread::sleep(Duration::from_millis(50));
        child.kill().unwrap();
        let killed = Instant::now();
        assert_eq!(waiter.join().unwrap(), Err(GetError::Disconnected));
        assert!(killed.elapsed() < Duration::from_secs(2), "the death was noticed late");
    });
    let _ = wait_child(&mut child, LIMIT);
    // The end cannot be taken again: pipes connect once.
    assert!(Pipe::open(&name).is_err());
}
