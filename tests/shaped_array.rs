//! N-dimensional `SharedArray`s: the shape is recorded in the segment (format 3), seen by
//! another process on open, checked by `open_or_create` and `expect_shape`; version 2
//! segments still open as 1-D; hostile shape records are typed errors, never panics.

mod common;
#[path = "common/hostile_bytes.rs"]
mod hostile_bytes;

use std::fs::OpenOptions;
use std::time::Duration;

use common::{Exit, fork_child, unique_name, wait_pid};
use hostile_bytes::{hostile_values, path, read_word, write_word};
use shmkit::segment::header::{self, HEADER_SIZE};
use shmkit::shared::{MAX_DIMS, Shape};
use shmkit::{ClaimError, Rows, SegmentError, SharedArray};

#[test]
fn another_process_sees_the_shape_and_claims_bands_of_rows() {
    let _serial = common::serial();
    let a = SharedArray::<f64>::create(None, [6, 5]).unwrap();
    assert_eq!((a.shape().dims(), a.len()), (&[6, 5][..], 30));
    let name = a.name().unwrap().to_owned();
    let kid = fork_child(|| {
        let b = SharedArray::<f64>::open(&name).unwrap();
        if b.shape().dims() != [6, 5] {
            return 3;
        }
        let mut band = b.claim_mut(Rows(2..4)).unwrap();
        if band.shape().dims() != [2, 5] || band.range() != (10..20) {
            return 4;
        }
        band.fill(7.0);
        0
    });
    assert_eq!(wait_pid(kid, Duration::from_secs(20)), Exit::Code(0));
    let all = a.copy_to_vec().unwrap();
    assert!(all.iter().enumerate().all(|(i, &x)| x == if (10..20).contains(&i) { 7.0 } else { 0.0 }));
    assert_eq!(a.read().unwrap().shape().dims(), [6, 5], "a whole-array claim has the full shape");
    assert_eq!(a.claim(3..7).unwrap().shape().dims(), [4], "an unaligned range is flat");
    assert!(matches!(a.claim(Rows(5..7)), Err(ClaimError::OutOfBounds { .. })));
    assert!(matches!(a.claim(Rows(usize::MAX - 1..usize::MAX)), Err(ClaimError::OutOfBounds { .. })));
}

#[test]
fn every_constructor_takes_a_shape_and_open_or_create_checks_it() {
    let name = unique_name("shaped");
    let a = SharedArray::<u32>::open_or_create(&name, (2, 3, 4)).unwrap();
    assert_eq!(a.shape().dims(), [2, 3, 4]);
    let same = SharedArray::<u32>::open_or_create(&name, [2, 3, 4]).unwrap();
    assert_eq!(same.shape(), a.shape());
    match SharedArray::<u32>::open_or_create(&name, [4, 3, 2]) {
        Err(SegmentError::ShapeMismatch { expected, found, .. }) => {
            assert_eq!((expected, found), (vec![4, 3, 2], vec![2, 3, 4]))
        }
        other => panic!("{other:?}"),
    }
    assert!(SharedArray::<u32>::open(&name).unwrap().expect_shape([2, 3, 4]).is_ok());
    assert!(matches!(a.expect_shape(24), Err(SegmentError::ShapeMismatch { .. })));
    let anon = SharedArray::<u8>::anonymous(&[1, 2, 3, 4, 5, 6, 7][..]).unwrap();
    assert_eq!(anon.shape().ndim(), MAX_DIMS);
    let opts = shmkit::SegmentOptions::default();
    assert_eq!(SharedArray::<u8>::create_with(&opts, None, vec![3, 3], 4).unwrap().shape().dims(), [3, 3]);
    assert!(matches!(SharedArray::<u8>::create(None, [2, 0]), Err(SegmentError::ZeroLength)));
    assert!(matches!(SharedArray::<u8>::create(None, [1; 8]), Err(SegmentError::BadShape { .. })));
    assert!(matches!(SharedArray::<u8>::create(None, [usize::MAX, 3]), Err(SegmentError::TooLarge { .. })));
}

#[test]
fn reshape_keeps_the_data_and_needs_the_same_count() {
    let a = SharedArray::<i32>::anonymous(12).unwrap();
    a.copy_from_slice(0, &(0..12).collect::<Vec<_>>()).unwrap();
    let a = a.reshape([3, 4]).unwrap();
    assert_eq!(a.shape(), Shape::new(&[3, 4]).unwrap());
    assert_eq!(&*a.claim(Rows(1..2)).unwrap(), &[4, 5, 6, 7]);
    assert!(matches!(a.reshape([5, 5]), Err(SegmentError::SizeMismatch { expected: 25, found: 12, .. })));
}

/// The shape record sits in the 64 bytes before the payload.
fn record_at(a: &SharedArray<u64>) -> usize {
    a.segment().header().unwrap().payload_offset as usize - 64
}

#[test]
fn a_version_2_array_opens_one_dimensional() {
    let mut a = SharedArray::<u64>::create(None, [4, 4]).unwrap();
    a.persist();
    let name = a.name().unwrap().to_owned();
    let f = OpenOptions::new().read(true).write(true).open(path(&name)).unwrap();
    assert_eq!(read_word(&f, 8, 4), u64::from(header::FORMAT_VERSION));
    write_word(&f, 8, 4, 2);
    let old = SharedArray::<u64>::open(&name).unwrap();
    assert_eq!((old.shape().dims(), old.segment().header().unwrap().version), (&[16][..], 2));
    drop(old);
    write_word(&f, 8, 4, u64::from(header::FORMAT_VERSION) + 1);
    assert!(matches!(SharedArray::<u64>::open(&name), Err(SegmentError::UnsupportedVersion { found: 4, .. })));
    shmkit::Segment::unlink(&name).unwrap();
}

#[test]
fn hostile_shape_records_are_typed_errors() {
    let mut a = SharedArray::<u64>::create(None, [4, 4]).unwrap();
    a.persist();
    let name = a.name().unwrap().to_owned();
    let at = record_at(&a);
    assert!(at >= HEADER_SIZE);
    let f = OpenOptions::new().read(true).write(true).open(path(&name)).unwrap();
    for word in 0..8 {
        let orig = read_word(&f, at + word * 8, 8);
        for v in hostile_values(orig, 8) {
            write_word(&f, at + word * 8, 8, v);
            match SharedArray::<u64>::open(&name) {
                Err(SegmentError::Corrupt { reason, .. }) => assert!(reason.contains("shape"), "{reason}"),
                other => panic!("word {word} = {v}: {other:?}"),
            }
        }
        write_word(&f, at + word * 8, 8, orig);
    }
    assert_eq!(SharedArray::<u64>::open(&name).unwrap().shape().dims(), [4, 4]);
    shmkit::Segment::unlink(&name).unwrap();
}
