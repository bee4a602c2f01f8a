//! Tasks over any serde data (feature `serde`): map/imap/imap_unordered/starmap/apply(_async)
//! with structs holding Strings and Vecs; chunks cut where a message is full; an argument or
//! a chunk's results too large for a message is an error naming the limit, never a
//! truncation.
#![cfg(feature = "serde")]

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shmkit::pool::{Pool, PoolError};

shmkit::fork_server_at_load!();

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sample {
    name: String,
    xs: Vec<f64>,
}

fn summarize(s: Sample) -> (String, f64) {
    (s.name.to_uppercase(), s.xs.iter().sum())
}

fn sample(i: usize) -> Sample {
    Sample { name: format!("s{i}"), xs: vec![i as f64; 8] }
}

#[test]
fn the_whole_family_carries_serde_values() {
    let pool = Pool::new(2).unwrap();
    let out = pool.map_serde(summarize, (0..1000).map(sample)).unwrap();
    assert_eq!(out.len(), 1000);
    assert!(out.iter().enumerate().all(|(i, r)| *r == (format!("S{i}"), 8.0 * i as f64)));
    let ordered: Vec<_> = pool.imap_serde(summarize, (0..50).map(sample), 7).map(Result::unwrap).collect();
    assert_eq!(ordered[49], ("S49".to_string(), 392.0));
    let mut any: Vec<_> = pool.imap_unordered_serde(summarize, (0..50).map(sample), 3).map(Result::unwrap).collect();
    any.sort_by(|a, b| a.1.total_cmp(&b.1));
    assert_eq!(any, ordered);
    let joined =
        pool.starmap_serde(|a: String, n: usize| a.repeat(n), [("ab".to_string(), 2), ("c".into(), 3)]).unwrap();
    assert_eq!(joined, ["abab", "ccc"]);
    assert_eq!(pool.apply_serde(|v: Vec<u8>| v.len(), vec![1, 2, 3]).unwrap(), 3);
    let mut h = pool.apply_async_serde(summarize, sample(2)).unwrap();
    assert_eq!(h.get_timeout(Duration::from_secs(20)).unwrap(), ("S2".to_string(), 16.0));
    let h = pool.apply_async_serde(summarize, sample(3)).unwrap();
    assert_eq!(h.get().unwrap().1, 24.0);
}

#[test]
fn chunks_are_cut_where_a_message_is_full_and_every_item_runs() {
    let pool = Pool::builder().processes(2).message_size(1024).build().unwrap();
    // ~300 bytes each: a chunksize of 100 holds at most 3 per 1 KiB message.
    let big = |i: usize| Sample { name: "x".repeat(200), xs: vec![i as f64; 12] };
    let out: Vec<_> = pool.imap_serde(|s: Sample| s.xs[0] as u64, (0..100).map(big), 100).map(Result::unwrap).collect();
    assert_eq!(out, (0..100).collect::<Vec<u64>>());
}

#[test]
fn oversize_messages_are_errors_naming_the_limit() {
    let pool = Pool::builder().processes(1).message_size(1024).build().unwrap();
    let huge = Sample { name: String::new(), xs: vec![1.0; 200] };
    match pool.map_serde(summarize, [sample(1), huge.clone()]) {
        Err(e @ PoolError::MessageTooLarge { limit: 1024, .. }) => assert!(e.to_string().contains("message_size")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(pool.apply_async_serde(summarize, huge), Err(PoolError::MessageTooLarge { .. })));
    // Results: one small argument, a result too large for the result area.
    match pool.apply_serde(|n: usize| vec![7u8; n], 4000) {
        Err(PoolError::TaskFailed { message }) => assert!(message.contains("message_size"), "{message}"),
        other => panic!("{other:?}"),
    }
    // A panicking task is reported and the pool goes on.
    assert!(matches!(
        pool.apply_serde(|_: String| -> u8 { panic!("boom") }, "x".into()),
        Err(PoolError::TaskPanicked { .. })
    ));
    assert_eq!(pool.apply_serde(|s: String| s + "!", "ok".into()).unwrap(), "ok!");
}

#[test]
fn an_input_too_large_fails_in_its_own_place_and_the_rest_run() {
    let pool = Pool::builder().processes(2).message_size(1024).build().unwrap();
    let huge = Sample { name: String::new(), xs: vec![1.0; 200] };
    let items = vec![sample(0), sample(1), huge, sample(3), sample(4)];
    let got: Vec<_> = pool.imap_serde(summarize, items, 1).collect();
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(got[0].as_ref().unwrap(), &("S0".to_string(), 0.0), "{got:?}");
    assert_eq!(got[1].as_ref().unwrap(), &("S1".to_string(), 8.0), "{got:?}");
    assert!(matches!(got[2], Err(PoolError::MessageTooLarge { limit: 1024, .. })), "{got:?}");
    assert_eq!(got[3].as_ref().unwrap(), &("S3".to_string(), 24.0), "{got:?}");
    assert_eq!(got[4].as_ref().unwrap(), &("S4".to_string(), 32.0), "{got:?}");
}

#[test]
fn big_chunks_are_cut_by_bytes_and_keep_their_order() {
    // Items of varying sizes, a chunksize larger than any message holds: every chunk is cut
    // where the next item does not fit, and the order of results is the order of inputs.
    let pool = Pool::builder().processes(2).message_size(1024).build().unwrap();
    let item = |i: usize| Sample { name: "n".repeat(i % 300), xs: vec![i as f64; i % 20] };
    let want: Vec<_> = (0..2000).map(|i| summarize(item(i))).collect();
    let got: Vec<_> = pool.imap_serde(summarize, (0..2000).map(item), 10_000).map(Result::unwrap).collect();
    assert_eq!(got, want);
    assert_eq!(pool.map_serde(summarize, (0..2000).map(item)).unwrap(), want);
}

#[test]
fn apply_async_serde_with_runs_the_callback_that_fits_the_outcome() {
    use std::sync::mpsc;
    let pool = Pool::new(2).unwrap();
    let wait = Duration::from_secs(20);
    let (tx, rx) = mpsc::channel();
    let (ok, err) = (tx.clone(), tx.clone());
    let h = pool
        .apply_async_serde_with(
            summarize,
            sample(4),
            move |r| ok.send(Ok(r)).unwrap(),
            move |e| err.send(Err(e.to_string())).unwrap(),
        )
        .unwrap();
    assert_eq!(rx.recv_timeout(wait).unwrap(), Ok(("S4".to_string(), 32.0)));
    assert_eq!(h.get().unwrap(), ("S4".to_string(), 32.0), "the handle still gives the result");
    // A panicking task reaches the error callback, and the handle says the same.
    let (ok, err) = (tx.clone(), tx.clone());
    let h = pool
        .apply_async_serde_with(
            |_: String| -> (String, f64) { panic!("boom") },
            "x".into(),
            move |r| ok.send(Ok(r)).unwrap(),
            move |e| err.send(Err(e.to_string())).unwrap(),
        )
        .unwrap();
    match rx.recv_timeout(wait).unwrap() {
        Err(message) => assert!(message.contains("boom"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(h.get(), Err(PoolError::TaskPanicked { .. })));
    // An argument too large for a message is refused before anything runs: no callback.
    let small = Pool::builder().processes(1).message_size(1024).build().unwrap();
    let huge = Sample { name: String::new(), xs: vec![1.0; 200] };
    let (ok, err) = (tx.clone(), tx);
    let refused = small.apply_async_serde_with(
        summarize,
        huge,
        move |r| ok.send(Ok(r)).unwrap(),
        move |e| err.send(Err(e.to_string())).unwrap(),
    );
    assert!(matches!(refused, Err(PoolError::MessageTooLarge { .. })));
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "no callback for a refused task");
}

#[test]
fn borrowed_inputs_stay_the_callers() {
    let pool = Pool::new(2).unwrap();
    let samples: Vec<Sample> = (0..300).map(sample).collect();
    let owned = pool.map_serde(summarize, samples.clone()).unwrap();
    assert_eq!(pool.map_serde(summarize, &samples).unwrap(), owned);
    let lazy: Vec<_> = pool.imap_serde(summarize, samples.iter(), 7).map(Result::unwrap).collect();
    assert_eq!(lazy, owned);
    let mut any: Vec<_> = pool.imap_unordered_serde(summarize, &samples[..50], 3).map(Result::unwrap).collect();
    any.sort_by(|a, b| a.1.total_cmp(&b.1));
    assert_eq!(any, owned[..50]);
    let pairs = vec![("ab".to_string(), 2usize), ("c".to_string(), 3)];
    assert_eq!(pool.starmap_serde(|a: String, n: usize| a.repeat(n), &pairs).unwrap(), ["abab", "ccc"]);
    assert_eq!(samples[299], sample(299), "the inputs are still there");
    assert_eq!(pairs.len(), 2);
}

#[test]
fn a_dropped_serde_handle_leaves_its_task_running_and_its_callback_runs() {
    use std::sync::mpsc;
    use std::time::Instant;
    fn nap(ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }
    let pool = Pool::new(2).unwrap();
    let (tx, rx) = mpsc::channel();
    let err = tx.clone();
    let t = Instant::now();
    // Fire and forget, as Python's apply_async(f, args, callback=...) is used.
    drop(
        pool.apply_async_serde_with(
            nap,
            400,
            move |r| tx.send(Ok(r)).unwrap(),
            move |e| err.send(Err(e.to_string())).unwrap(),
        )
        .unwrap(),
    );
    assert!(t.elapsed() < Duration::from_millis(300), "dropping the handle waited for the task: {:?}", t.elapsed());
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), Ok(400), "the task ran to its end");
    // The handle is Send: another thread may wait for it.
    let h = pool.apply_async_serde(nap, 1).unwrap();
    assert_eq!(std::thread::spawn(move || h.get()).join().unwrap().unwrap(), 1);
}
