#!/usr/bin/env bash
# The throughput family (experiments/throughput/): every file swept over node count and
# message size, configurations interleaved repetition by repetition, each repetition between
# two raw fan-outs across the same bridge; then one comparison of them all into OUT.
# Root (namespaces). Every run is bounded (its duration_ms and raw_ms) and tears itself down.
# Usage: sudo bench/throughput-family.sh
#   env: NODES (3,5,9,16), SIZES (64,1024,8192,65536), REPS (2), FILES (all eight),
#        RESULTS (target/throughput-family), OUT (results/throughput/<date>)
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=${NODES:-3,5,9,16}
sizes=${SIZES:-64,1024,8192,65536}
reps=${REPS:-2}
files=${FILES:-$(ls experiments/throughput/*.toml)}
results=${RESULTS:-target/throughput-family}
out=${OUT:-results/throughput/$(date -u +%Y-%m-%d)}
[ "$(id -u)" = 0 ] || { echo "bench/throughput-family.sh: needs root (network namespaces)" >&2; exit 2; }
cargo build --release -q -p ringlab
mkdir -p "$out"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!results' || echo ' (with uncommitted changes)')"
  echo "kernel: $(uname -r)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs"
  echo "command: NODES=$nodes SIZES=$sizes REPS=$reps bench/throughput-family.sh"
} > "$out/machine.txt"
for f in $files; do
  ./target/release/ringlab sweep --interleave --reps "$reps" --param "nodes=$nodes" \
    --param "load.size=$sizes" --out "$results" "$f"
  # The checker has judged every repetition's records; at maximum load they take up to a
  # GiB a repetition, so they go (summary.json, throughput.csv and the hlogs stay).
  name=$(basename "$f" .toml)
  latest=$(ls -d "$results/$name-sweep"/*/ | tail -n 1)
  find "$latest" -mindepth 2 -maxdepth 2 -type d -name records -exec rm -rf {} +
done
# Each file's latest sweep.
dirs=()
for f in $files; do
  name=$(basename "$f" .toml)
  dirs+=("$(ls -d "$results/$name-sweep"/*/ | tail -n 1)")
done
./target/release/ringlab compare "${dirs[@]}" --out "$out" > "$out/tables.md"
echo "wrote $out (tables.md, compare.md, ring-over-raw.svg, throughput-family.json)"
