#!/usr/bin/env bash
# The heat example under MPI next to the pool version, same grid, same kernel, same machine:
#
#   benches/mpi_heat.sh [grid_size] [steps]        # default 1024 200, ROUNDS=3
#
# prints (medians over ROUNDS alternating runs, every run checked bit for bit):
#   mpi_heat_steps_per_s_shared: <x> steps/s      mpiexec -n 2, halos from the shared window
#   mpi_heat_steps_per_s_messages: <x> steps/s    mpiexec -n 2, every rank its own node
#   pool_heat_steps_per_s: <x> steps/s            examples/heat_diffusion, 2 pool workers
#   mpi_heat_shared_vs_pool: <x> x                (> 1: the MPI shared-window run is faster)
# Needs mpiexec and the `mpi` feature's build dependencies (MPICH, libclang).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1024}
steps=${2:-200}
rounds=${ROUNDS:-3}
cargo build --quiet --release --features mpi,ndarray --example mpi_heat --example heat_diffusion
dir="${CARGO_TARGET_DIR:-target}/release/examples"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for _ in $(seq "$rounds"); do
  timeout 600 mpiexec -n 2 "$dir/mpi_heat" --bench "$n" "$steps" </dev/null >>"$out/mpi.txt"
  "$dir/heat_diffusion" "$n" "$steps" 2 >"$out/pool-run.txt"
  cat "$out/pool-run.txt" >>"$out/pool.txt"
  if grep -q "NO" "$out/pool-run.txt"; then echo "heat_diffusion: result differs from the single-process run" >&2; exit 1; fi
done
# "pool, 2 workers: 337.8 steps/s, ..." -> pool_heat_steps_per_s: 337.8 steps/s
sed -n 's/^pool, 2 workers: \([0-9.]*\) steps\/s.*/pool_heat_steps_per_s: \1 steps\/s/p' "$out/pool.txt" >>"$out/mpi.txt"

python3 - "$out/mpi.txt" <<'PY'
import statistics, sys
figures = {}
for line in open(sys.argv[1]):
    name, _, rest = line.partition(": ")
    value, unit = rest.split()
    figures.setdefault(name, []).append(float(value))
med = {k: statistics.median(v) for k, v in figures.items()}
for k in ("mpi_heat_steps_per_s_shared", "mpi_heat_steps_per_s_messages", "pool_heat_steps_per_s"):
    if k in med:
        print(f"{k}: {med[k]:.1f} steps/s")
if "pool_heat_steps_per_s" in med and "mpi_heat_steps_per_s_shared" in med:
    print(f"mpi_heat_shared_vs_pool: {med['mpi_heat_steps_per_s_shared'] / med['pool_heat_steps_per_s']:.2f} x")
PY
