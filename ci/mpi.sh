#!/usr/bin/env bash
# MPI checks (feature `mpi`), run by .ci/run after the default-feature tests:
#   - clippy on every target with --features mpi;
#   - tests/mpi_node.rs (each test re-runs itself under mpiexec) and the mpi doc examples;
#   - examples/mpi_heat under `mpiexec -n 2` with shared windows and with every rank its own
#     node (halos as MPI messages), plus a mixed 3-rank job; each run checks its final grid
#     bit for bit against a single-process run and exits non-zero on a mismatch;
#   - examples/heat_diffusion (the pool version) on the same grid gives the same total heat.
# Needs mpiexec (MPICH) and libclang; .ci/run installs them. Small grid, few steps: seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo clippy -p shmkit --all-targets --features mpi -- -D warnings
cargo test -p shmkit --features mpi --test mpi_node
cargo test -p shmkit --features mpi --doc mpi::
cargo build -p shmkit --features mpi --example mpi_heat
heat="${CARGO_TARGET_DIR:-target}/debug/examples/mpi_heat"

mpi_total=""
run() { # ranks split
  echo "== SHMKIT_MPI_SPLIT=$2 mpiexec -n $1 mpi_heat 96 40"
  out=$(SHMKIT_MPI_SPLIT=$2 timeout 180 mpiexec -n "$1" "$heat" 96 40 </dev/null) || {
    echo "$out"; echo "mpi_heat failed (ranks $1, split $2)"; exit 1
  }
  echo "$out"
  grep -q "bit-for-bit equal to the single-process run: yes" <<<"$out" || { echo "no bitwise match reported"; exit 1; }
  mpi_total=$(grep "^total heat" <<<"$out")
}
run 2 shared   # halos read in place from the node's shared window
run 2 rank     # forced cross-node: halos as MPI messages
run 3 2        # mixed: ranks 0-1 share a window, rank 2 gets messages

# The kernel is the pool example's: examples/heat_diffusion (2 pool workers) on the same grid
# reports the same total heat.
cargo build -p shmkit --features ndarray --example heat_diffusion
pool_total=$(timeout 180 "${CARGO_TARGET_DIR:-target}/debug/examples/heat_diffusion" 96 40 2 </dev/null | grep "^total heat")
echo "pool: $pool_total"
[ "$pool_total" = "$mpi_total" ] || { echo "mpi_heat ($mpi_total) and heat_diffusion ($pool_total) disagree"; exit 1; }
echo "mpi: 4 passed, 0 failed"
