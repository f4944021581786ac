#!/bin/bash
# usage: ab.sh TAG "BIN1 BIN2 ..." PASSES EXPS...   -> prints tsv: pass exp bin msgs/s p50 p99 cpu
TAG=$1; BINS=$2; PASSES=$3; shift 3
for p in $(seq 1 $PASSES); do
 for e in "$@"; do
  for b in $BINS; do
   out=$($b run /tmp/pexp/$e.toml --out /tmp/pres/ab-$TAG 2>&1)
   row=$(echo "$out" | grep -A2 "msgs/s (median)" | tail -1 | awk -F'|' '{print $5"|"$6"|"$8}')
   cpu=$(echo "$out" | grep -A2 "CPU µs per delivered" | tail -1 | awk -F'|' '{print $3}')
   echo -e "$p\t$e\t$(basename $b)\t$row\t$cpu"
  done
 done
done
