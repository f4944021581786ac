#!/usr/bin/env bash
# A/B of batched socket calls (recvmmsg, and sendmmsg for the unicast fan-out) against one
# system call per datagram: 5 nodes on loopback, 1 KiB agreed messages at maximum load,
# alternating runs. Appends to results/net-loopback/<date>/batched-io.jsonl. Bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
load_ms=${LOAD_MS:-4000}
reps=${REPS:-3}
out=results/net-loopback/$(date -u +%Y-%m-%d)
mkdir -p "$out"
cargo build --release -q -p ringlab
port=8405
: > "$out/batched-io.jsonl"
for rep in $(seq 1 "$reps"); do
  for transport in unicast multicast; do
    for mode in batched unbatched; do
      port=$((port + 10))
      flag=""; [ "$mode" = unbatched ] && flag="--unbatched"
      target/release/ringlab cluster --nodes 5 --size 1024 --load-ms "$load_ms" --json \
        --transport "$transport" --port "$port" $flag \
        | python3 -c "import json,sys; d=json.load(sys.stdin); d['io']='$mode'; print(json.dumps(d))" >> "$out/batched-io.jsonl"
    done
  done
done
python3 - "$out" <<'PY'
import json, sys, statistics as st
out = sys.argv[1]
runs = [json.loads(l) for l in open(f"{out}/batched-io.jsonl")]
rows = {}
for r in runs:
    rows.setdefault((r["transport"], r["io"]), []).append(r["mean_msgs_per_s"])
lines = ["| transport | socket calls | ring msg/s per node (median) | runs |", "|---|---|---|---|"]
for (t, io), v in sorted(rows.items()):
    lines.append(f"| {t} | {io} | {st.median(v):.0f} | {', '.join('%.0f' % x for x in v)} |")
open(f"{out}/batched-io.md", "w").write("Produced by `bench/batched-io.sh` (LOAD_MS=4000 REPS=3).\n\n" + "\n".join(lines) + "\n")
print("\n".join(lines))
PY
