#!/usr/bin/env bash
# CI (root): the ssh backend against the local one, on one machine. ssh-lab.sh makes three
# namespaces, each with its own sshd; one experiment (experiments/ci-ssh-isolate-heal.toml:
# 3 nodes, node 3 isolated and healed twice, 3 repetitions) runs through the ssh backend
# and through the local backend. Fails unless:
#   - a --dry-run prints the remote commands (ssh, nft rules) and makes nothing;
#   - both runs complete with 0 checker violations and every fault recovers;
#   - the ssh run states its clock uncertainty in every repetition, and each host's estimated
#     offset (the hosts share this machine's clock: true offset 0) is within it;
#   - the figures agree: per fault, the two backends' median membership recovery differ by no
#     more than 2 x the clock uncertainty (the span between two hosts' records) plus the
#     larger of the two backends' own spreads over their repetitions (max - min), at least
#     25 ms (the run-to-run variation a repetition cannot shrink: the token's and the load's
#     phase at the fault), and for a heal at least 100 ms: two join timeouts, since on real
#     hosts a change lands on each host at its own instant (faults-applied.json: 15-40 ms
#     apart here under load, where the local backend changes one bridge atomically), and a
#     merge round that loses a join to that retries after one join timeout (50 ms);
#   - nothing is left behind: no node, sshd, namespace, nftables table, run directory or lock.
# Usage: netns-scripts/ci-ssh.sh [RINGLAB_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-./target/release/ringlab}
lab="rs$$"
run="rr$$"
dry="rd$$"
out=target/ci-results-ssh
exp=experiments/ci-ssh-isolate-heal.toml
sshd_pids=""
cleanup() {
  bash netns-scripts/ssh-lab.sh down --prefix "$lab" >/dev/null 2>&1 || true
}
trap cleanup EXIT
fail() { echo "ci-ssh: FAIL: $*"; exit 1; }

if { ! command -v sshd >/dev/null && [ ! -x /usr/sbin/sshd ]; } || ! command -v nc >/dev/null; then
  # policy-rc.d keeps the package's own sshd service from starting on the host (ours run in
  # the lab's namespaces); it is removed again if this made it.
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client netcat-openbsd >/dev/null
  [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
fi
rm -rf "$out"
inv=$(bash netns-scripts/ssh-lab.sh up --nodes 3 --prefix "$lab")
sshd_pids=$(cat /run/ringlab-"$lab"/sshd-*.pid)
echo "ssh lab $lab up: sshd PIDs $sshd_pids, inventory $inv"

echo "-- dry run"
"$bin" run "$exp" --hosts "$inv" --dry-run --reps 1 --prefix "$dry" > target/ci-ssh-dry.log
grep -q "^\[h1\] ssh .*ControlMaster" target/ci-ssh-dry.log || fail "the dry run printed no ssh connection"
grep -q "^\[h3\] .*nft -f -" target/ci-ssh-dry.log || fail "the dry run printed no nft call"
grep -q "^\[h3\]   < .*udp sport 5405 udp dport 5405 drop" target/ci-ssh-dry.log || fail "the dry run printed no nft rule"
ls -d /tmp/ringlab-"$dry"-* 2>/dev/null && fail "the dry run made a run directory"
for i in 1 2 3; do
  ip netns exec "$lab-n$i" nft list tables | grep -q "$dry" && fail "the dry run made an nftables table"
done

echo "-- the experiment through the ssh backend"
"$bin" run "$exp" --hosts "$inv" --prefix "$run" --out "$out/ssh" | tee target/ci-ssh.log
echo "-- the same experiment through the local backend"
"$bin" run "$exp" --out "$out/local" | tee target/ci-ssh-local.log

ssh_dir=$(ls -d "$out"/ssh/*/*/)
local_dir=$(ls -d "$out"/local/*/*/)
for d in "$ssh_dir" "$local_dir"; do
  grep -q '"stopped"' "$d/summary.json" && fail "$d stopped early"
  grep -q '"violations": 0,' "$d/summary.json" || fail "violations in $d"
done
grep -q '"kind": "ssh"' "$ssh_dir/summary.json" || fail "the ssh run does not say its backend"
n_u=$(grep -c '"clock_uncertainty_ms"' "$ssh_dir/summary.json" || true)
[ "$n_u" = 3 ] || fail "the clock uncertainty is stated in $n_u of 3 repetitions"
grep -q "Clock domains" target/ci-ssh.log || fail "no clock-domain table"
# The hosts share this machine's clock: every estimated offset must be within its uncertainty.
for h in "$ssh_dir"/records/rep-*/hosts.json; do
  awk '/"used"/ { u = 1 } u && /"offset_ns"/ { gsub(/[^-0-9]/, "", $2); o = $2 + 0; if (o < 0) o = -o }
       u && /"uncertainty_ns"/ { gsub(/[^0-9]/, "", $2); if (o > $2 + 0) bad = 1; u = 0 }
       END { exit bad }' "$h" || fail "an offset outside its stated uncertainty in $h"
done
u_ms=$(grep -o '"clock_uncertainty_ms": [0-9.e-]*' "$ssh_dir/summary.json" | awk '{ if ($2 > m) m = $2 } END { print m + 0 }')

# runs.csv: rep (2), fault (3), action (4), membership_ms (7).
agree=$(awk -F, -v u="$u_ms" '
  FNR == 1 { b++; next }
  { k = $3; v[b, k, ++n[b, k]] = $7 + 0; act[k] = $4; keys[k] = 1 }
  function med(b, k,   i, j, t, c) {
    c = n[b, k]
    for (i = 1; i <= c; i++) s[i] = v[b, k, i]
    for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (s[j] < s[i]) { t = s[i]; s[i] = s[j]; s[j] = t }
    lo = s[1]; hi = s[c]
    return c % 2 ? s[(c + 1) / 2] : (s[c / 2] + s[c / 2 + 1]) / 2
  }
  END {
    bad = 0
    for (k in keys) {
      ml = med(1, k); rl = hi - lo; ms = med(2, k); rs = hi - lo
      spread = rl > rs ? rl : rs; floor = act[k] == "heal" ? 100 : 25; if (spread < floor) spread = floor
      tol = 2 * u + spread; d = ms - ml; if (d < 0) d = -d
      ok = d <= tol
      if (!ok) bad = 1
      printf "fault %s %s: local %.1f ms, ssh %.1f ms, difference %.1f <= %.1f (2 x %.3f + %.1f): %s\n", k, act[k], ml, ms, d, tol, u, spread, ok ? "agree" : "DISAGREE"
    }
    exit bad
  }' "$local_dir/runs.csv" "$ssh_dir/runs.csv") || { echo "$agree"; fail "the backends disagree"; }
echo "$agree"

echo "-- nothing left behind"
for i in 1 2 3; do
  ip netns exec "$lab-n$i" nft list tables | grep -q "$run" && fail "table inet $run left in $lab-n$i"
done
ls -d /tmp/ringlab-"$run"-* 2>/dev/null && fail "run directories left on the hosts"
left_nodes=$(ps -eo pid=,args= | grep "/tmp/ringlab-$run-" | grep -v grep || true)
[ -z "$left_nodes" ] || fail "nodes of the run still run: $left_nodes"
[ -e "/run/ringlab-$run.lock" ] && fail "the run's lock is left"
cleanup
for p in $sshd_pids; do
  # Killed by the lab's teardown; gone once reaped (a zombie is not running).
  for _ in $(seq 1 100); do
    [ -e "/proc/$p" ] && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ] || break
    sleep 0.02
  done
  if [ -e "/proc/$p" ] && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ]; then
    fail "sshd $p of the lab still runs"
  fi
done
ip netns list | awk '{print $1}' | grep -q "^$lab-" && fail "namespaces of $lab left"
[ -e "/run/ringlab-$lab" ] && fail "the lab's state directory is left"
echo "ci-ssh: both backends agree; nothing left (no node, sshd, namespace, nftables table, directory or lock)"
