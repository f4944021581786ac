#!/bin/bash
cd /work/main
for round in 1 2; do for b in base new; do
  B=/tmp/st/ringlab-final; [ $b = base ] && B=/tmp/sweeps/ringlab-base
  $B run experiments/partial-cut.toml --out /tmp/st/pc-$b-$round > /tmp/st/pc-$b-$round.log 2>&1
  echo "$b $round rc=$?" >> /tmp/st/cutcmp.txt
done; done
echo done >> /tmp/st/cutcmp.txt
