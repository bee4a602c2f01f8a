#!/usr/bin/env bash
# Run the Rust benchmarks and their Python counterparts back to back on this machine and
# write BENCHMARKS.md: every figure next to its OS floor and Python, with the ratios.
#
#   benches/compare.sh            # all figures (a few minutes)
#   benches/compare.sh queue      # only figures whose group/name contains "queue"
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== cargo bench --features ndarray,serde --bench ipc $*" >&2
cargo bench --features ndarray,serde --bench ipc -- "$@" | tee "$out/rust.txt" >&2
for f in benches/python/[!_]*.py; do
  echo "== python3 $f" >&2
  python3 "$f" "$@" | tee -a "$out/python.txt" >&2 || echo "(python3 $f failed)" >&2
done
python3 benches/compare.py "$out/rust.txt" "$out/python.txt" > BENCHMARKS.md
echo "wrote BENCHMARKS.md" >&2
