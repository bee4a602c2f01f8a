//! Feature `ndarray`: claims as `ArrayView`/`ArrayViewMut` of their true shape over the
//! shared memory (no copy): processes write their own bands of rows through ndarray code and
//! every view sees the others' writes.
#![cfg(feature = "ndarray")]

mod common;

use std::time::Duration;

use common::{Exit, fork_child, wait_pid};
use shmkit::ndarray::{Array2, Ix1, Ix2, Ix3, IxDyn, s};
use shmkit::{ClaimError, Rows, SharedArray};

#[test]
fn processes_write_bands_through_views_and_see_each_other() {
    let _serial = common::serial();
    let grid = SharedArray::<f64>::create(None, [8, 5]).unwrap();
    let name = grid.name().unwrap().to_owned();
    let kids: Vec<_> = [0..4usize, 4..8]
        .into_iter()
        .map(|rows| {
            let name = name.clone();
            fork_child(move || {
                let g = SharedArray::<f64>::open(&name).unwrap();
                let r0 = rows.start;
                let mut band = g.claim_mut(Rows(rows)).unwrap();
                let mut v = band.view_mut::<Ix2>().unwrap();
                if v.dim() != (4, 5) {
                    return 3;
                }
                for ((i, j), x) in v.indexed_iter_mut() {
                    *x = ((r0 + i) * 10 + j) as f64;
                }
                0
            })
        })
        .collect();
    for k in kids {
        assert_eq!(wait_pid(k, Duration::from_secs(20)), Exit::Code(0));
    }
    let all = grid.read().unwrap();
    let v = all.view::<Ix2>().unwrap();
    let want = Array2::from_shape_fn((8, 5), |(i, j)| (i * 10 + j) as f64);
    assert_eq!(v, want);
    assert_eq!(v.as_ptr(), all.as_ptr(), "the view is the shared memory, not a copy");
    assert_eq!(v.slice(s![2..4, 1]).to_vec(), [21.0, 31.0]);
    assert_eq!(all.view::<IxDyn>().unwrap().shape(), [8, 5]);
}

#[test]
fn a_view_of_another_dimensionality_is_a_typed_error() {
    let cube = SharedArray::<u16>::anonymous([2, 3, 4]).unwrap();
    let mut band = cube.claim_mut(Rows(1..2)).unwrap();
    band.view_mut::<Ix3>().unwrap()[[0, 2, 3]] = 7;
    assert!(matches!(band.view::<Ix2>(), Err(ClaimError::Dimensions { wanted: 2, .. })));
    drop(band);
    assert_eq!(cube.read().unwrap().view::<Ix3>().unwrap()[[1, 2, 3]], 7);
    let flat = cube.claim(1..5).unwrap();
    assert_eq!(flat.view::<Ix1>().unwrap().len(), 4);
    assert!(matches!(flat.view::<Ix3>(), Err(ClaimError::Dimensions { .. })));
}
