//! Sizes from the caller at their limits: every constructor of arrays, queues, pipes, dicts
//! and lists, given a huge size (usize::MAX, or just above its documented bound), must refuse
//! with a typed "too large" error, never wrap its arithmetic, panic or fault.

use shmkit::channel::{ByteQueue, Pipe, PipeError, Queue};
use shmkit::manager::{DictOptions, MAX_CAPACITY, MAX_KEY_LEN, ManagerError, SharedDict, SharedList};
use shmkit::shared::MAX_CLAIM_SLOTS;
use shmkit::{SegmentError, SegmentOptions, SharedArray};

/// Sparse options: a refusal must not depend on /dev/shm being too small to reserve.
fn sparse() -> SegmentOptions {
    SegmentOptions::new().reserve(false)
}

fn too_large_segment<T: std::fmt::Debug>(what: &str, r: Result<T, SegmentError>) {
    match r {
        Err(SegmentError::TooLarge { .. }) => {}
        other => panic!("{what}: expected SegmentError::TooLarge, got {other:?}"),
    }
}

fn too_large_manager<T: std::fmt::Debug>(what: &str, r: Result<T, ManagerError>) {
    match r {
        Err(ManagerError::TooLarge { .. }) => {}
        other => panic!("{what}: expected ManagerError::TooLarge, got {other:?}"),
    }
}

fn too_large_pipe<T: std::fmt::Debug>(what: &str, r: Result<T, PipeError>) {
    match r {
        Err(PipeError::Segment(SegmentError::TooLarge { .. })) => {}
        other => panic!("{what}: expected TooLarge, got {other:?}"),
    }
}

#[test]
fn array_claim_slots_are_bounded() {
    too_large_segment("slots usize::MAX", SharedArray::<u8>::create_with(&sparse(), None, 10, usize::MAX));
    too_large_segment("slots above bound", SharedArray::<u8>::create_with(&sparse(), None, 10, MAX_CLAIM_SLOTS + 1));
    // Huge slot counts whose control block would wrap to a small number.
    let wrap = usize::MAX / 64 + 2;
    too_large_segment("slots that wrap", SharedArray::<u64>::create_with(&sparse(), None, 10, wrap));
    // At the bound it works.
    let a = SharedArray::<u8>::create_with(&sparse(), None, 10, MAX_CLAIM_SLOTS).unwrap();
    assert_eq!(a.claim_slots().unwrap().1, MAX_CLAIM_SLOTS);
}

#[test]
fn array_lengths_are_bounded() {
    too_large_segment("len usize::MAX", SharedArray::<u8>::create_with(&sparse(), None, usize::MAX, 4));
    too_large_segment("f64 len usize::MAX", SharedArray::<f64>::create_with(&sparse(), None, usize::MAX, 4));
    too_large_segment("len wraps bytes", SharedArray::<u64>::create_with(&sparse(), None, usize::MAX / 8 + 2, 4));
    too_large_segment("len isize::MAX", SharedArray::<u8>::create_with(&sparse(), None, isize::MAX as usize, 4));
    too_large_segment("anonymous usize::MAX", SharedArray::<u32>::anonymous(usize::MAX));
}

#[test]
fn queue_capacities_are_bounded() {
    too_large_segment("queue usize::MAX", Queue::<u64>::anonymous(usize::MAX));
    too_large_segment("queue isize::MAX", Queue::<u8>::create_with(&sparse(), None, isize::MAX as usize));
    too_large_segment("queue wraps", Queue::<u64>::anonymous(usize::MAX / 64 + 2));
    // Slots of a large element type whose payload overflows.
    too_large_segment("queue of big elements", Queue::<u128>::create_with(&sparse(), None, 1 << 58));
}

#[test]
fn byte_queue_sizes_are_bounded() {
    too_large_segment("capacity usize::MAX", ByteQueue::anonymous(usize::MAX, 8));
    too_large_segment("max_message usize::MAX", ByteQueue::anonymous(4, usize::MAX));
    too_large_segment("max_message usize::MAX - 8", ByteQueue::anonymous(4, usize::MAX - 8));
    too_large_segment("capacity x stride overflows", ByteQueue::create_with(&sparse(), None, 1 << 20, 1 << 50));
    too_large_segment("capacity x stride too large", ByteQueue::create_with(&sparse(), None, 1 << 16, 1 << 47));
}

#[test]
fn pipe_sizes_are_bounded() {
    too_large_pipe("capacity usize::MAX", Pipe::anonymous(usize::MAX, 8));
    too_large_pipe("max_message usize::MAX", Pipe::anonymous(4, usize::MAX));
    too_large_pipe("capacity x stride overflows", Pipe::anonymous(1 << 20, 1 << 50));
    too_large_pipe("capacity x stride wraps u64", Pipe::anonymous(1 << 30, 1 << 40));
    too_large_pipe("named, too large", Pipe::create(None, 1 << 16, 1 << 47));
}

#[test]
fn dict_sizes_are_bounded() {
    too_large_manager("capacity usize::MAX", SharedDict::<str, u64>::anonymous(usize::MAX));
    too_large_manager("capacity above bound", SharedDict::<str, u64>::anonymous(MAX_CAPACITY as usize + 1));
    too_large_manager("key length usize::MAX", DictOptions::new().max_key_len(usize::MAX).anonymous::<str, u64>(8));
    too_large_manager(
        "key length above bound",
        DictOptions::new().max_key_len(MAX_KEY_LEN + 1).anonymous::<str, u64>(8),
    );
    let e = DictOptions::new().stripes(u32::MAX).anonymous::<str, u64>(8).unwrap_err();
    assert!(matches!(e, ManagerError::Invalid { .. }), "{e:?}");
}

#[test]
fn list_capacities_are_bounded() {
    too_large_manager("capacity usize::MAX", SharedList::<u64>::anonymous(usize::MAX));
    too_large_manager("capacity wraps", SharedList::<u64>::anonymous(usize::MAX / 8 + 2));
    too_large_manager("u8 isize::MAX", SharedList::<u8>::create_with(&sparse(), None, isize::MAX as usize));
    let max = SharedList::<u64>::MAX_CAPACITY;
    too_large_manager("just above the bound", SharedList::<u64>::create_with(&sparse(), None, max + 1));
}
