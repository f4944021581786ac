#!/bin/bash
# The store-copy figures on loopback (results/store-copy/DATE/): real nodes, the chunk
# protocol's designs and chunk sizes, the ring path, a provider killed half-way, against raw
# UDP of one flow measured before and after every copy. Bounded: every run stops by itself.
# Usage: bench/store-copy.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p ringlab -p ringlab-bench
out=${1:-results/store-copy/$(date -u +%Y-%m-%dT%H%MZ)}
mkdir -p "$out"
bin=target/release/store_copy
{
  echo "machine: $(nproc) cores, $(grep MemTotal /proc/meminfo | awk '{print $2 " kB"}'), $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "rustc: $(rustc --version)"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)')"
  echo "date: $(date -u +%FT%TZ)"
} > "$out/machine.txt"
: > "$out/runs.jsonl"
run() {
  echo "$bin $*" >> "$out/commands.txt"
  "$bin" "$@" | tee -a "$out/runs.jsonl"
}
port=9700
for design in pull push; do
  for chunk in 65536 262144 1048576 3145728; do
    run --bytes 10485760 --design $design --chunk-bytes $chunk --rounds 3 --port $port
    port=$((port + 5))
  done
  run --bytes 10485760 --design $design --chunk-bytes 1048576 --window 4 --rounds 3 --port $port
  port=$((port + 5))
  run --bytes 10485760 --design $design --chunk-bytes 1048576 --window 4 --datagram-window 256 --rounds 3 --port $port
  port=$((port + 5))
  # A provider SIGKILLed half-way: resumed after the last key, and started again from
  # nothing (resume = false, Ceph's pull design).
  run --bytes 10485760 --design $design --chunk-bytes 262144 --kill-provider --rounds 3 --port $port
  port=$((port + 5))
  run --bytes 10485760 --design $design --chunk-bytes 262144 --kill-provider --no-resume --rounds 3 --port $port
  port=$((port + 5))
  run --bytes 104857600 --design $design --chunk-bytes 1048576 --rounds 1 --port $port
  port=$((port + 5))
done
run --bytes 10485760 --path ring --rounds 3 --port $port
port=$((port + 5))
# 1 GiB: the fill through the ring takes minutes (1 Mi writes of 1 KiB on every node).
for design in pull push; do
  run --bytes 1073741824 --design $design --chunk-bytes 1048576 --rounds 1 --port $port
  port=$((port + 5))
done

# The table (medians over the rounds of each command) from runs.jsonl.
python3 bench/store-copy-table.py "$out"
