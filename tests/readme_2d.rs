//! The README's 2-D example, as written there (names made unique), and the numpy side of it.
#![cfg(feature = "ndarray")]

mod common;
#[path = "common/python.rs"]
mod py;

use shmkit::ndarray::{Ix2, s};
use shmkit::pool::{ArrayRef, Pool};
use shmkit::{ClaimMut, Rows, SharedArray};

shmkit::fork_server_at_load!();

#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Ctx {
    alpha: f64,
    src: ArrayRef<f64>,
}

fn relax(r0: usize, out: &mut ClaimMut<'_, f64>, c: &Ctx) {
    let src = c.src.resolve().unwrap(); // the worker's cached mapping
    let band = src.claim(Rows(r0..r0 + out.shape().rows())).unwrap();
    let (x, mut y) = (band.view::<Ix2>().unwrap(), out.view_mut::<Ix2>().unwrap());
    y.assign(&x.mapv(|v| v * c.alpha)); // ndarray code over shared memory
}

const PY: &str = r#"
import sys, shmkit
a = shmkit.open_array(sys.argv[1], "f64")
ok = a.array.shape == (512, 256) and list(a.array[0, :4]) == [100.0] * 4
a.close()
sys.exit(0 if ok else 3)
"#;

#[test]
fn the_readme_2d_example_runs_and_numpy_sees_the_same_grid() {
    let pool = Pool::new(2).unwrap();
    let (na, nb) = (common::unique_name("grid-a"), common::unique_name("grid-b"));
    let a = SharedArray::<f64>::create(Some(&na), [512, 256]).unwrap();
    let b = SharedArray::<f64>::create(Some(&nb), [512, 256]).unwrap();
    a.claim_mut(Rows(..)).unwrap().view_mut::<Ix2>().unwrap().slice_mut(s![0, ..]).fill(100.0);
    pool.map_chunks_mut_with(&b, 64, &Ctx { alpha: 0.5, src: ArrayRef::new(&a).unwrap() }, relax).unwrap();
    let out = b.read().unwrap();
    assert!(out.view::<Ix2>().unwrap().row(0).iter().all(|&v| v == 50.0));
    assert_eq!(out.iter().sum::<f64>(), 50.0 * 256.0);
    if let Some(o) = py::python(PY, &[&na]) {
        assert_eq!(py::check(&o), 0, "numpy sees the (512, 256) grid");
    }
}
