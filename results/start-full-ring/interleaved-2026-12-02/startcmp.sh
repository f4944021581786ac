#!/bin/bash
# Start -> full ring, the base build (497796d) and the new build alternating, 2 rounds of 50 starts each.
cd /work/main
for round in 1 2 3 4 5 6; do  # run as three invocations: rounds 1 2, then 3 4, then 5 6 (idle machine)
  for b in base new; do
    B=/tmp/st/ringlab-final; [ $b = base ] && B=/tmp/sweeps/ringlab-base
    $B run experiments/start-full-ring.toml --reps 50 --out /tmp/st/start-$b-$round > /tmp/st/start-$b-$round.log 2>&1
    echo "$b $round rc=$?" >> /tmp/st/startcmp.txt
  done
done
echo done >> /tmp/st/startcmp.txt
