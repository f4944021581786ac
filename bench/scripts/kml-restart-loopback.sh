#!/bin/bash
# Three real nodes on loopback (no root) running kml: node 1 fills N records, node 3 is
# killed (SIGKILL) and restarted empty, so its merge replays the N records (catch-up) and
# mirrors them into STATE_DIR/kml. Prints whether every node settled (`svc kml status` not
# syncing), the digests, the real directory's digest, and how many regular configurations
# each node saw after the restart (1: the ring formed once; a merge done in one step of
# 20,000 records stalled node 3 past the token timeout and the ring re-formed 3 to 5 times).
#
#   bench/scripts/kml-restart-loopback.sh BINARY N DIR PORT
#   e.g. bench/scripts/kml-restart-loopback.sh target/release/ringlab 20000 /tmp/kml-lo 7505
set -u
B=$1; N=$2; D=$3; PORT=$4
rm -rf $D; mkdir -p $D
# Configs as `ringlab cluster` writes them, with kml on.
$B cluster --nodes 3 --load-ms 100 --port $PORT --dir $D/proto > /dev/null
for i in 1 2 3; do
  sed -e "s#$D/proto#$D#g" -e 's/^services = \[\]/services = ["kml"]/' -e 's/^record_messages = true/record_messages = false/' $D/proto/node-$i.toml > $D/node-$i.toml
done
rm -rf $D/proto
start() { $B node --config $D/node-$1.toml >> $D/node-$1.log 2>&1 & echo $! > $D/pid-$1; }
for i in 1 2 3; do start $i; done
sleep 3
$B ctl $D/node-1.sock svc kml fill records=$N seed=1 dirs=64 > /dev/null
for t in $(seq 1 240); do
  r=$($B ctl $D/node-3.sock svc kml status | python3 -c 'import json,sys; print(json.load(sys.stdin)["records"])')
  [ "$r" = "$N" ] && break; sleep 1
done
echo "filled: node 3 has $r records after ${t}s"
sleep 2
kill -9 $(cat $D/pid-3); sleep 0.5
T0=$($B clock)
start 3
for t in $(seq 1 60); do
  sleep 1
  ok=1
  for i in 1 2 3; do
    s=$($B ctl $D/node-$i.sock svc kml status 2>/dev/null) || { ok=0; break; }
    echo "$s" | python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if (not s["syncing"] and s["records"]>0) else 1)' || ok=0
  done
  [ $ok = 1 ] && break
done
echo "settled=$ok after ${t}s"
for i in 1 2 3; do
  $B ctl $D/node-$i.sock svc kml status | python3 -c 'import json,sys; s=json.load(sys.stdin); print('$i', s["records"], s["digest"][:16], s["tree"][:16], s["syncing"], s.get("work_pending"), s.get("mirror_pending"))'
done
echo "dir of node 3: $($B kml-digest $D/state/node-3/kml | cut -c1-16)"
for i in 1 2 3; do
  n=$(python3 -c "
import json
n=0
for l in open('$D/node-$i.jsonl'):
    r=json.loads(l)
    if r.get('ev')=='config' and r.get('kind')=='regular' and r['t_ns']>$T0: n+=1
print(n)")
  echo "node $i: regular configurations after the restart: $n"
done
for i in 1 2 3; do $B ctl $D/node-$i.sock quit >/dev/null 2>&1; done
sleep 2
for i in 1 2 3; do kill $(cat $D/pid-$i) 2>/dev/null; done
$B check $D 2>&1 | tail -1
