#!/usr/bin/env bash
# Loopback throughput benchmark: 5 real nodes, 1 KiB agreed messages at maximum load from every
# node, with raw UDP (ringlab blast: one sender, the same size, 4 receivers) measured in the
# same run, for both transports and both ring variants. Writes results/net-loopback/<date>/.
# Bounded: each configuration loads for LOAD_MS (default 5000) and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
load_ms=${LOAD_MS:-5000}
reps=${REPS:-3}
out=results/net-loopback/$(date -u +%Y-%m-%d)
mkdir -p "$out"
cargo build --release -q -p ringlab
bin=target/release/ringlab
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse --short HEAD)"
  echo "kernel: $(uname -r)"
  lscpu | grep -E "^Model name|^CPU\(s\)"
  free -g | head -2
  echo "command: LOAD_MS=$load_ms REPS=$reps bench/net-loopback.sh"
} > "$out/machine.txt"
: > "$out/runs.jsonl"
port=7405
for rep in $(seq 1 "$reps"); do
  for transport in unicast multicast; do
    for variant in classic accelerated; do
      port=$((port + 10))
      "$bin" cluster --nodes 5 --size 1024 --load-ms "$load_ms" --baseline --json \
        --transport "$transport" --variant "$variant" --port "$port" >> "$out/runs.jsonl"
    done
  done
done
python3 - "$out" <<'PY'
import json, sys, statistics as st
out = sys.argv[1]
runs = [json.loads(l) for l in open(f"{out}/runs.jsonl")]
rows = {}
for r in runs:
    rows.setdefault((r["transport"], r["variant"]), []).append(r)
lines = ["| transport | variant | ring msg/s per node | ring MB/s per node | raw UDP datagrams/s per receiver | ring / raw | p50 latency µs | p99 latency µs | idle RSS KiB | peak RSS KiB | checker |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
for (t, v), rs in sorted(rows.items()):
    med = lambda f: st.median(f(r) for r in rs)
    lines.append("| %s | %s | %.0f | %.1f | %.0f | %.1f%% | %.0f | %.0f | %d | %d | %s |" % (
        t, v, med(lambda r: r["mean_msgs_per_s"]), med(lambda r: r["mean_mb_per_s"]),
        med(lambda r: r["raw"]["per_receiver_msgs_per_s"]), 100 * med(lambda r: r["ratio_to_raw"]),
        med(lambda r: st.median(n["latency_p50_us"] for n in r["per_node"])),
        med(lambda r: st.median(n["latency_p99_us"] for n in r["per_node"])),
        max(n["idle_rss_kib"] for r in rs for n in r["per_node"]),
        max(n["peak_rss_kib"] for r in rs for n in r["per_node"]),
        "clean" if all(r["checker_violations"] == 0 for r in rs) else "VIOLATIONS"))
open(f"{out}/table.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
