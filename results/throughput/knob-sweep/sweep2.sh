#!/bin/bash
for t in multicast unicast; do
/tmp/ringlab-b1 sweep --interleave --reps 2 --param netmtu=1400,4400,8900 --param max_messages=17,34 /tmp/pexp/knob-$t.toml --out /tmp/pres > /tmp/pexp/sweep2-$t.log 2>&1
done
