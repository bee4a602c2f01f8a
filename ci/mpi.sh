#!/usr/bin/env bash
# MPI checks (feature `mpi`), run by .ci/run after the default-feature tests:
#   - clippy on the MPI code with --features mpi;
#   - tests/mpi_node.rs (each test re-runs itself under mpiexec);
#   - examples/mpi_heat under `mpiexec -n 2` with shared windows and with every rank its own
#     node (halos as MPI messages), plus a mixed 3-rank job; each run checks its final grid
#     bit for bit against a single-process run and exits non-zero on a mismatch.
# Needs mpiexec (MPICH) and libclang; .ci/run installs them. Small grid, few steps: seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo clippy --features mpi --lib --example mpi_heat --test mpi_node -- -D warnings
cargo test --features mpi --test mpi_node
cargo build --features mpi --example mpi_heat
heat="${CARGO_TARGET_DIR:-target}/debug/examples/mpi_heat"

run() { # ranks split
  echo "== SHMKIT_MPI_SPLIT=$2 mpiexec -n $1 mpi_heat 96 40"
  out=$(SHMKIT_MPI_SPLIT=$2 timeout 180 mpiexec -n "$1" "$heat" 96 40 </dev/null) || {
    echo "$out"; echo "mpi_heat failed (ranks $1, split $2)"; exit 1
  }
  echo "$out"
  grep -q "bit-for-bit equal to the single-process run: yes" <<<"$out" || { echo "no bitwise match reported"; exit 1; }
}
run 2 shared   # halos read in place from the node's shared window
run 2 rank     # forced cross-node: halos as MPI messages
run 3 2        # mixed: ranks 0-1 share a window, rank 2 gets messages
echo "mpi: 3 passed, 0 failed"
