#!/bin/bash
# perseed.sh BIN NODES FROM COUNT VARIANT FAULTS [extra]: prints "seed final_ring_ms violations" per seed
B=$1; N=$2; FROM=$3; C=$4; V=$5; F=$6; shift 6
for s in $(seq $FROM $((FROM+C-1))); do
  $B sim --nodes $N --seed $s --seeds 1 --variant $V --faults $F "$@" --json | python3 -c "import json,sys; d=json.load(sys.stdin); print($s, round(d['max_final_ring_ms']), d['violations'])"
done
