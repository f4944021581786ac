#!/bin/bash
for t in multicast unicast; do
/tmp/ringlab-b2 sweep --interleave --reps 3 --param max_messages=17,34,50 /tmp/pexp/knob-$t.toml --out /tmp/pres > /tmp/pexp/sweep3-$t.log 2>&1
done
