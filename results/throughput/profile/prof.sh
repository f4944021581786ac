#!/bin/bash
# usage: prof.sh BIN EXP TAG
BIN=$1; EXP=$2; TAG=$3
$BIN run $EXP --out /tmp/pres > /tmp/pexp/$TAG.log 2>&1 &
RP=$!
for i in $(seq 1 40); do
  P1=$(ps -eo pid,args | grep "$(basename $BIN) node --config" | grep "node-1.toml" | grep -v grep | awk '{print $1}')
  P3=$(ps -eo pid,args | grep "$(basename $BIN) node --config" | grep "node-3.toml" | grep -v grep | awk '{print $1}')
  [ -n "$P1" ] && [ -n "$P3" ] && break
  sleep 0.25
done
sleep 2
perf record -F 2000 -g -o /tmp/pexp/$TAG-n1.data -p $P1 -- sleep 4 > /dev/null 2>&1 &
perf record -F 2000 -g -o /tmp/pexp/$TAG-n3.data -p $P3 -- sleep 4 > /dev/null 2>&1 &
wait $RP
sleep 1
grep -A3 "msgs/s (median)" /tmp/pexp/$TAG.log | tail -1
