#!/usr/bin/env bash
# Re-makes the side-by-side table of BENCHMARKS.md: the native backend and the PyTorch peer,
# one after the other, on 1 thread and on every core, then the table with the ratios.
#   python3 -m venv /tmp/peers-venv && /tmp/peers-venv/bin/pip install torch numpy
#   nice -n -19 bash benches/peers/run.sh [/tmp/peers-venv/bin/python] [seconds per point]
# (nice: on a shared machine, so that other jobs disturb the timings less; root only)
set -euo pipefail
PY=${1:-/tmp/peers-venv/bin/python}
SECS=${2:-3}
OUT=${OUT:-target/peers}
mkdir -p "$OUT"
cargo build --release --example bench_native
ALL=$(nproc)
for T in 1 "$ALL"; do
  ./target/release/examples/bench_native --threads "$T" --seconds "$SECS" --json "$OUT/native-$T.json" | tee "$OUT/native-$T.txt"
  OMP_NUM_THREADS=$T "$PY" benches/peers/torch_peer.py --seconds "$SECS" --json "$OUT/torch-$T.json" | tee "$OUT/torch-$T.txt"
done
"$PY" benches/peers/table.py "$OUT" 1 "$ALL"
