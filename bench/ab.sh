#!/usr/bin/env bash
# A/B of two commits on this machine, measured interleaved (this machine's raw figures move by
# a third from one pass to the next, so A and B alternate within every repetition):
#   1. criterion's ring-core benchmarks (bench/benches/ring.rs), REPS passes each, alternating;
#   2. heap allocations per handled packet (bench/benches/allocs.rs; deterministic, once each);
#   3. the real-UDP loopback cluster: 5 nodes, 1 KiB agreed messages at maximum load from every
#      node, both transports and both variants, A and B alternating inside every repetition.
# Each commit is built in its own git worktree under target/ab/ (removed at the end, on every
# exit path). Loads are bounded (LOAD_MS each) and stop by themselves; nodes run on 127.0.0.x.
# Usage: bench/ab.sh BASE [HEAD]   env: REPS (3), LOAD_MS (3000), OUT (results/ab/<date>)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bench/ab.sh BASE [HEAD]" >&2; exit 2; }
root=$(pwd)
base=$(git rev-parse --short "$1")
head=$(git rev-parse --short "${2:-HEAD}")
reps=${REPS:-3}
load_ms=${LOAD_MS:-3000}
out=${OUT:-results/ab/$(date -u +%Y-%m-%d)-$base-$head}
mkdir -p "$out"
out=$(cd "$out" && pwd)
made=()
cleanup() {
  for w in "${made[@]}"; do git -C "$root" worktree remove --force "$w" 2>/dev/null || true; done
}
trap cleanup EXIT
for rev in "$base" "$head"; do
  wt=$root/target/ab/$rev
  if [ ! -d "$wt" ]; then
    git worktree add -q --detach "$wt" "$rev"
    made+=("$wt")
  fi
  echo "== building $rev" >&2
  (cd "$wt" && cargo build --release -q -p ringlab && cargo bench -q -p ringlab-bench --no-run 2>/dev/null)
done
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "A (base): $base $(git log -1 --format=%s "$base" | cut -c1-100)"
  echo "B (head): $head $(git log -1 --format=%s "$head" | cut -c1-100)"
  echo "kernel: $(uname -r)"
  lscpu | grep -E "^Model name|^CPU\(s\)"
  free -g | head -2
  echo "command: REPS=$reps LOAD_MS=$load_ms bench/ab.sh $1 ${2:-HEAD}"
} > "$out/machine.txt"

: > "$out/criterion.jsonl"
for rep in $(seq 1 "$reps"); do
  for rev in "$base" "$head"; do
    echo "== criterion pass $rep, $rev" >&2
    wt=$root/target/ab/$rev
    (cd "$wt" && cargo bench -q -p ringlab-bench --bench ring -- --noplot --warm-up-time 1 --measurement-time 3 >/dev/null 2>&1)
    python3 - "$wt/target/criterion" "$rev" "$rep" >> "$out/criterion.jsonl" <<'PY'
import json, os, sys
root, rev, rep = sys.argv[1:4]
for dirpath, _, files in os.walk(root):
    if os.path.basename(dirpath) == "new" and "estimates.json" in files:
        bench = json.load(open(os.path.join(dirpath, "benchmark.json")))
        est = json.load(open(os.path.join(dirpath, "estimates.json")))
        print(json.dumps({"rev": rev, "rep": int(rep), "bench": bench["full_id"],
                          "median_ns": est["median"]["point_estimate"]}))
PY
  done
done

for rev in "$base" "$head"; do
  echo "== allocations, $rev" >&2
  (cd "$root/target/ab/$rev" && cargo bench -q -p ringlab-bench --bench allocs 2>/dev/null | grep '^|') > "$out/allocs-$rev.md"
done

: > "$out/loopback.jsonl"
port=9405
for rep in $(seq 1 "$reps"); do
  for transport in unicast multicast; do
    for variant in classic accelerated; do
      for rev in "$base" "$head"; do
        port=$((port + 10))
        echo "== loopback pass $rep, $transport $variant, $rev" >&2
        "$root/target/ab/$rev/target/release/ringlab" cluster --nodes 5 --size 1024 --load-ms "$load_ms" \
          --json --transport "$transport" --variant "$variant" --port "$port" \
          | python3 -c "import json,sys; d=json.load(sys.stdin); d['rev']='$rev'; print(json.dumps(d))" >> "$out/loopback.jsonl"
      done
    done
  done
done

python3 - "$out" "$base" "$head" <<'PY'
import json, sys, statistics as st
out, a, b = sys.argv[1:4]
lines = [open(f"{out}/machine.txt").read().strip(), "", "## Criterion (median of the per-pass medians)", "",
         f"| benchmark | A {a} | B {b} | B / A | passes (A; B) |", "|---|---|---|---|---|"]
crit = [json.loads(l) for l in open(f"{out}/criterion.jsonl")]
def fmt(ns):
    return f"{ns/1e6:.3f} ms" if ns >= 1e6 else f"{ns/1e3:.3f} µs" if ns >= 1e3 else f"{ns:.1f} ns"
for bench in sorted({c["bench"] for c in crit}):
    va = [c["median_ns"] for c in crit if c["bench"] == bench and c["rev"] == a]
    vb = [c["median_ns"] for c in crit if c["bench"] == bench and c["rev"] == b]
    if not va or not vb:
        continue
    lines.append(f"| {bench} | {fmt(st.median(va))} | {fmt(st.median(vb))} | {st.median(vb)/st.median(va):.3f} | "
                 f"{', '.join(fmt(v) for v in va)}; {', '.join(fmt(v) for v in vb)} |")
lines += ["", "## Real UDP on loopback (5 nodes, 1 KiB, maximum load; medians over the passes)", "",
          f"| transport | variant | A msg/s per node | B msg/s per node | B / A | A p50 / p99 µs | B p50 / p99 µs | A peak RSS KiB | B peak RSS KiB | checker |",
          "|---|---|---|---|---|---|---|---|---|---|"]
runs = [json.loads(l) for l in open(f"{out}/loopback.jsonl")]
for t in ("unicast", "multicast"):
    for v in ("classic", "accelerated"):
        ra = [r for r in runs if r["rev"] == a and r["transport"] == t and r["variant"] == v]
        rb = [r for r in runs if r["rev"] == b and r["transport"] == t and r["variant"] == v]
        if not ra or not rb:
            continue
        m = lambda rs: st.median(r["mean_msgs_per_s"] for r in rs)
        lat = lambda rs, k: st.median(st.median(n[k] for n in r["per_node"]) for r in rs)
        rss = lambda rs: max(n["peak_rss_kib"] for r in rs for n in r["per_node"])
        clean = all(r["checker_violations"] == 0 for r in ra + rb)
        lines.append(f"| {t} | {v} | {m(ra):.0f} | {m(rb):.0f} | {m(rb)/m(ra):.3f} | "
                     f"{lat(ra,'latency_p50_us'):.0f} / {lat(ra,'latency_p99_us'):.0f} | {lat(rb,'latency_p50_us'):.0f} / {lat(rb,'latency_p99_us'):.0f} | "
                     f"{rss(ra)} | {rss(rb)} | {'clean' if clean else 'VIOLATIONS'} |")
lines += ["", "## Heap allocations per handled packet (deterministic)", "", f"A ({a}):", ""]
lines += open(f"{out}/allocs-{a}.md").read().strip().splitlines()
lines += ["", f"B ({b}):", ""]
lines += open(f"{out}/allocs-{b}.md").read().strip().splitlines()
open(f"{out}/README.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
echo "results in $out" >&2
