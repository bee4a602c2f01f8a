//! `SerdeQueue` (cargo feature `serde`): typed values through shared memory.
#![cfg(feature = "serde")]

use std::collections::BTreeMap;

use shmkit::channel::{GetError, PutError, SerdeQueue};

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum Task {
    Stop,
    Work { id: u64, name: String, weights: Vec<f32>, tags: BTreeMap<String, i8> },
}

#[test]
fn values_round_trip() {
    let q = SerdeQueue::<Task>::create(None, 4, 128).unwrap();
    let peer = SerdeQueue::<Task>::open(q.name().unwrap()).unwrap();
    let work = Task::Work {
        id: 42,
        name: "ünïcode".into(),
        weights: vec![0.5, -1.0],
        tags: [("a".to_string(), -3)].into_iter().collect(),
    };
    q.put(work).unwrap();
    q.put(Task::Stop).unwrap();
    assert!(matches!(peer.get().unwrap(), Task::Work { id: 42, .. }));
    assert_eq!(peer.try_get(), Ok(Task::Stop));
    assert_eq!(peer.try_get(), Err(GetError::Empty));
}

#[test]
fn oversized_value_comes_back() {
    let q = SerdeQueue::<Vec<u8>>::anonymous(2, 16).unwrap();
    match q.put(vec![1u8; 100]) {
        Err(PutError::TooLarge { msg, max: 16, .. }) => assert_eq!(msg.len(), 100),
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_type_is_a_decode_error() {
    let q = SerdeQueue::<String>::anonymous(2, 64).unwrap();
    q.put("not a number".repeat(2)).unwrap();
    // Bytes that are not a valid encoding of the type: a u64 varint that never ends.
    q.as_bytes().put(&[0xff; 11]).unwrap();
    assert!(q.get().is_ok());
    assert!(matches!(q.get(), Err(GetError::Decode(_))));
}
