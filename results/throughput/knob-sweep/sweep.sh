#!/bin/bash
for t in multicast unicast; do
/tmp/ringlab-base sweep --interleave --reps 2 --param window_size=50,100,200 --param max_messages=17,34,50 /tmp/pexp/knob-$t.toml --out /tmp/pres > /tmp/pexp/sweep-$t.log 2>&1
done
