//! Kernels with context: `map_chunks_with` / `map_chunks_mut_with` split an N-D array into
//! bands of rows and hand every call a context (Pod, or serde under feature `serde`);
//! `ArrayRef`s in the context let one task read other arrays, resolved in the worker.

mod common;

use bytemuck::{Pod, Zeroable};
use shmkit::pool::{ArrayRef, Pool, PoolError};
use shmkit::{Claim, ClaimMut, Rows, SharedArray};

shmkit::fork_server_at_load!();

#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct Axpy {
    a: f64,
    x: ArrayRef<f64>,
    y: ArrayRef<f64>,
}

/// out = a * x + y over one band, reading two other arrays by handle.
fn axpy(row0: usize, out: &mut ClaimMut<'_, f64>, c: &Axpy) {
    let rows = row0..row0 + out.shape().rows();
    let (x, y) = (c.x.resolve().unwrap(), c.y.resolve().unwrap());
    let (x, y) = (x.claim(Rows(rows.clone())).unwrap(), y.claim(Rows(rows)).unwrap());
    for ((o, xi), yi) in out.iter_mut().zip(x.iter()).zip(y.iter()) {
        *o = c.a * xi + yi;
    }
}

fn band_info(row0: usize, band: &Claim<'_, f64>, scale: &u64) -> [u64; 3] {
    [row0 as u64, band.shape().rows() as u64 * scale, band.shape()[1] as u64]
}

#[test]
fn bands_of_rows_with_a_context_reading_other_arrays() {
    let pool = Pool::new(2).unwrap();
    let [x, y, out] = [0, 1, 2].map(|_| SharedArray::<f64>::create(None, [37, 11]).unwrap());
    x.copy_from_slice(0, &(0..37 * 11).map(|i| i as f64).collect::<Vec<_>>()).unwrap();
    y.write().unwrap().fill(0.5);
    let ctx = Axpy { a: 2.0, x: ArrayRef::new(&x).unwrap(), y: ArrayRef::new(&y).unwrap() };
    pool.map_chunks_mut_with(&out, 5, &ctx, axpy).unwrap();
    let got = out.copy_to_vec().unwrap();
    assert!(got.iter().enumerate().all(|(i, &v)| v == 2.0 * i as f64 + 0.5));
    let info = pool.map_chunks_with(&out, 5, &10u64, band_info).unwrap();
    assert_eq!(info.len(), 8, "37 rows in bands of 5");
    for (i, [r0, rows10, cols]) in info.into_iter().enumerate() {
        assert_eq!((r0, rows10, cols), (i as u64 * 5, 10 * 5.min(37 - i as u64 * 5), 11));
    }
}

#[test]
fn a_handle_to_a_recreated_name_is_refused() {
    let pool = Pool::new(1).unwrap();
    let name = common::unique_name("ctx-recreated");
    let out = SharedArray::<f64>::create(None, 4).unwrap();
    let old = SharedArray::<f64>::create(Some(&name), 4).unwrap();
    let stale = ArrayRef::new(&old).unwrap();
    drop(old);
    let _new = SharedArray::<f64>::create(Some(&name), 4).unwrap();
    let ctx = Axpy { a: 1.0, x: stale, y: stale };
    match pool.map_chunks_mut_with(&out, 4, &ctx, axpy) {
        Err(PoolError::TaskPanicked { message, .. }) => assert!(message.contains("another array"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_context_too_large_for_a_message_names_the_limit() {
    let pool = Pool::builder().processes(1).message_size(512).build().unwrap();
    let a = SharedArray::<f64>::create(None, [4, 4]).unwrap();
    match pool.map_chunks_with(&a, 1, &[0u64; 64], |_, _: &Claim<'_, f64>, _: &[u64; 64]| 0u8) {
        Err(e @ PoolError::MessageTooLarge { limit: 512, .. }) => {
            assert!(e.to_string().contains("message_size"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    let long = format!("{}-{}", common::unique_name("ctx"), "x".repeat(130));
    let b = SharedArray::<f64>::create(Some(&long), 4).unwrap();
    assert!(matches!(ArrayRef::new(&b), Err(PoolError::ArrayNameTooLong { limit: 128, .. })));
}

#[cfg(feature = "serde")]
#[test]
fn a_serde_context_reaches_every_call() {
    use shmkit::pool::Serde;
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Params {
        label: String,
        weights: Vec<f64>,
    }
    fn weighted(row0: usize, band: &Claim<'_, f64>, p: &Serde<Params>) -> f64 {
        assert_eq!(p.0.label, "w");
        band.iter().enumerate().map(|(k, v)| v * p.0.weights[(row0 + k / 3) % 4]).sum()
    }
    let pool = Pool::new(2).unwrap();
    let a = SharedArray::<f64>::create(None, [8, 3]).unwrap();
    a.write().unwrap().fill(1.0);
    let p = Serde(Params { label: "w".into(), weights: vec![1.0, 10.0, 100.0, 1000.0] });
    let sums = pool.map_chunks_with(&a, 3, &p, weighted).unwrap();
    assert_eq!(sums.iter().sum::<f64>(), 2.0 * 3.0 * 1111.0);
}
