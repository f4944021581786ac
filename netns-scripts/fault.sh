#!/usr/bin/env bash
# Induced faults on a topology made by topo.sh. Every action prints one line,
#   <action> t_ns=<CLOCK_MONOTONIC ns at which it had taken effect> targets=<nodes>
# (the clock the nodes' event records use), so a runner can put it among the records.
#
#   fault.sh [--prefix P] isolate NODE[,NODE...]   nobody hears NODE, NODE hears nobody
#   fault.sh [--prefix P] split A,B C,D,E [...]    each group hears only itself
#   fault.sh [--prefix P] cut A B [--oneway]       A and B stop hearing each other
#                                                  (--oneway: B stops hearing A only)
#   fault.sh [--prefix P] trunk down|up            two-sites: the trunk between the sites
#   fault.sh [--prefix P] link NODE down|up        NODE's link, at the centre
#   fault.sh [--prefix P] heal                     removes every cut, isolation and split,
#                                                  and brings the trunk up
#   fault.sh [--prefix P] loss NODE|all PCT [BURST]
#                                                  PCT% of NODE's packets, in and out, lost
#                                                  (nftables numgen); all: PCT% of every
#                                                  frame between two nodes; PCT 0 removes it.
#                                                  BURST > 1: PCT% mean loss in bursts of
#                                                  BURST frames on average (Gilbert-Elliott,
#                                                  one chain per directed pair of IPv4
#                                                  endpoints) by a 'ringlab relay' on NODE's
#                                                  link (all: on every node's link, losing
#                                                  only toward the node: once per hop)
#   fault.sh [--prefix P] delay NODE MS [JITTER]   netem where the kernel has it, else
#   fault.sh [--prefix P] reorder NODE PCT [GAP]   'ringlab relay' (pnet, AF_PACKET) on
#   fault.sh [--prefix P] duplicate NODE PCT       NODE's link; 0 removes the impairment
#   fault.sh [--prefix P] clear                    heal, plus no loss and no impairments
#   fault.sh [--prefix P] kill|pause|resume|restart NODE
#                                                  SIGKILL, SIGSTOP, SIGCONT by the PID in
#                                                  /run/ringlab-P/node-N.pid; restart reruns
#                                                  /run/ringlab-P/node-N.cmd in the namespace
#
# Every cut and every loss is a rule in one nftables table, `bridge P` in namespace P-sw,
# which every frame between two nodes crosses: 'oifname <to's port> ip saddr <from> drop'.
# Each action is one atomic nftables transaction, so it takes effect at one instant, and
# the timestamp is read right after it. ARP is never cut (a healed link needs no
# re-resolution). 'link NODE down|up' takes a node's link down at the centre instead.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"

prefix=rl
if [ "${1:-}" = --prefix ]; then
  prefix="$2"
  shift 2
fi
rl_check_prefix "$prefix"
rl_need_root
rl_check_lock "$prefix"
command -v nft >/dev/null || rl_die "needs nftables ('nft'): apt-get install nftables"
rl_load "$prefix"
st=$(rl_state "$prefix")
sw=$(rl_sw "$prefix")
action="${1:-}"
[ -n "$action" ] && shift || true

nodes_all() { seq 1 "$RL_NODES"; }

check_node() {
  [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le "$RL_NODES" ] || rl_die "no node '$1' (1..$RL_NODES)"
}

# The fault table's transaction for this action.
batch=""

nft_sw() { ip netns exec "$sw" nft "$@"; }

# A node's bridge-side port names: P-pN, or P-qN while a relay sits on its link.
ports() { echo "{ \"$prefix-p$1\", \"$prefix-q$1\" }"; }

# block FROM TO: TO no longer hears FROM.
block() {
  local from="$1" to="$2"
  [ "$from" = "$to" ] && return 0
  batch+="add rule bridge $prefix cuts oifname $(ports "$to") ip saddr $(rl_addr "$from") drop"$'\n'
}

apply() {
  mark
  [ -n "$batch" ] && printf '%s' "$batch" | nft_sw -f -
  batch=""
}

# The clock is read just before the first change is made (mark), so no effect of the fault
# can precede t_ns; done_ns is read after the last change. Between the two: ~2-6 ms (the nft
# or ip process doing the change), which a measured recovery therefore includes.
t_eff=""
mark() { [ -n "$t_eff" ] || t_eff=$(rl_now_ns); }

report() {
  local done
  done=$(rl_now_ns)
  echo "$1 t_ns=${t_eff:-$done} done_ns=$done targets=$2"
}

heal() {
  mark
  nft_sw flush chain bridge "$prefix" cuts
  if [ "$RL_SHAPE" = two-sites ]; then
    ip -n "$sw" link set "$prefix-tra" up
  fi
  for f in "$st"/linkdown-*; do
    [ -f "$f" ] || continue
    local n=${f##*-}
    ip -n "$sw" link set "$(port_now "$n")" up
    rm -f "$f"
  done
}

port_now() {
  if ip -n "$sw" link show "$prefix-q$1" >/dev/null 2>&1; then echo "$prefix-q$1"; else echo "$prefix-p$1"; fi
}

have_netem() {
  [ -f "$st/netem" ] && return "$(cat "$st/netem")"
  local ns
  ns=$(rl_ns "$prefix" 1)
  if ip netns exec "$ns" tc qdisc add dev "$prefix-e0" root netem delay 0ms 2>/dev/null; then
    ip netns exec "$ns" tc qdisc del dev "$prefix-e0" root 2>/dev/null || true
    echo 0 >"$st/netem"
    return 0
  fi
  echo 1 >"$st/netem"
  return 1
}

ringlab_bin() {
  local c
  for c in "${RINGLAB_BIN:-}" "$here/../target/release/ringlab" "$here/../target/debug/ringlab" "$(command -v ringlab || true)"; do
    if [ -n "$c" ] && [ -x "$c" ]; then
      echo "$c"
      return
    fi
  done
  rl_die "no ringlab binary (build it, or set RINGLAB_BIN)"
}

# impair NODE KEY VALUE...: records one impairment of NODE's link and (re)applies them all.
impair() {
  local n="$1" key="$2"
  shift 2
  check_node "$n"
  local f="$st/impair-$n"
  touch "$f"
  grep -v "^$key " "$f" >"$f.new" || true
  if [ "${1:-0}" != 0 ]; then echo "$key $*" >>"$f.new"; fi
  mv "$f.new" "$f"
  local delay=0 jitter=0 reorder=0 gap=10 dup=0 lpct=0 lburst=0 ltoward=both
  while read -r k a b c; do
    case "$k" in
      delay) delay=$a; jitter=${b:-0} ;;
      reorder) reorder=$a; gap=${b:-10} ;;
      duplicate) dup=$a ;;
      loss) lpct=$a; lburst=${b:-0}; ltoward=${c:-both} ;;
    esac
  done <"$f"
  local ns
  ns=$(rl_ns "$prefix" "$n")
  # The netem probe (cached in $st/netem) touches an interface: run it before the mark.
  # Bursty loss is the relay's alone (its chains are per pair of endpoints), so a link with
  # it takes the relay, which then carries the link's other impairments too.
  local netem=1
  have_netem && [ "$lpct" = 0 ] && netem=0
  mark
  if [ "$netem" = 0 ]; then
    [ -f "$st/relay-$n.pid" ] && stop_relay "$n"
    ip netns exec "$ns" tc qdisc del dev "$prefix-e0" root 2>/dev/null || true
    if [ -s "$f" ]; then
      local args="delay ${delay}ms ${jitter}ms"
      [ "$reorder" != 0 ] && args+=" reorder ${reorder}% gap 5"
      [ "$dup" != 0 ] && args+=" duplicate ${dup}%"
      # shellcheck disable=SC2086
      ip netns exec "$ns" tc qdisc add dev "$prefix-e0" root netem $args
    fi
    return
  fi
  # The relay owns the only path between the node's port and the bridge: the port leaves the
  # bridge, and a new pair (P-rN relay side, P-qN bridge side) takes its place.
  stop_relay "$n"
  ip netns exec "$ns" tc qdisc del dev "$prefix-e0" root 2>/dev/null || true
  if [ -s "$f" ]; then
    local br
    br=$(cat "$st/port-$n.master")
    ip -n "$sw" link add "$prefix-r$n" type veth peer name "$prefix-q$n"
    ip -n "$sw" link set "$prefix-p$n" nomaster
    ip -n "$sw" link set "$prefix-q$n" master "$br" up
    ip -n "$sw" link set "$prefix-r$n" up
    local bin toward_a=""
    [ "$ltoward" = a ] && toward_a=1
    bin=$(ringlab_bin)
    ip netns exec "$sw" "$bin" relay --a "$prefix-p$n" --b "$prefix-r$n" \
      --delay-ms "$delay" --jitter-ms "$jitter" --reorder-pct "$reorder" --reorder-gap-ms "$gap" \
      --duplicate-pct "$dup" --loss-pct "$lpct" --loss-burst "$lburst" \
      ${toward_a:+--loss-to-a-only} \
      --seed "$(( (${RINGLAB_SEED:-0} * 1000 + n) & 0x7fffffffffffffff ))" \
      --max-seconds "${RINGLAB_RELAY_MAX_S:-3600}" \
      >"$st/relay-$n.log" 2>&1 &
    echo $! >"$st/relay-$n.pid"
    # Wait until it has opened both interfaces.
    local k
    for k in $(seq 1 200); do
      grep -q '^relaying' "$st/relay-$n.log" 2>/dev/null && break
      kill -0 "$(cat "$st/relay-$n.pid")" 2>/dev/null || rl_die "relay failed: $(cat "$st/relay-$n.log")"
      sleep 0.01
    done
  fi
}

# Whether a process runs (an exited one whose parent has not reaped it yet does not).
alive() {
  [ -r "/proc/$1/stat" ] && ! grep -qE '^[0-9]+ \(.*\) [ZX] ' "/proc/$1/stat"
}

stop_relay() {
  local n="$1"
  if [ -f "$st/relay-$n.pid" ]; then
    local pid
    pid=$(cat "$st/relay-$n.pid")
    # Only while it still runs in our switch namespace: an exited relay's PID may be reused.
    if rl_pid_is_ours "$prefix" "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.005; done
      alive "$pid" && rl_pid_is_ours "$prefix" "$pid" && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$st/relay-$n.pid"
  fi
  if ip -n "$sw" link show "$prefix-r$n" >/dev/null 2>&1; then
    ip -n "$sw" link del "$prefix-r$n"
  fi
  if [ ! -f "$st/port-$n.master" ]; then
    ip -n "$sw" -o link show "$prefix-p$n" | grep -o 'master [^ ]*' | awk '{print $2}' >"$st/port-$n.master"
  fi
  ip -n "$sw" link set "$prefix-p$n" master "$(cat "$st/port-$n.master")" up
}

# loss NODE PCT: records NODE's loss, then rebuilds the loss chain in one transaction.
loss() {
  local n="$1" pct="$2"
  [[ "$pct" =~ ^[0-9]+$ ]] && [ "$pct" -le 100 ] || rl_die "loss must be 0-100 (percent)"
  touch "$st/loss"
  grep -v "^$n " "$st/loss" >"$st/loss.new" || true
  [ "$pct" != 0 ] && echo "$n $pct" >>"$st/loss.new"
  mv "$st/loss.new" "$st/loss"
}

loss_apply() {
  local b="flush chain bridge $prefix loss"$'\n' n pct
  while read -r n pct; do
    if [ "$n" = all ]; then
      # Every frame (every copy of a flooded one) between two nodes: PCT % per hop.
      b+="add rule bridge $prefix loss numgen random mod 100 < $pct drop"$'\n'
    else
      # Into the node (frames leaving the bridge on its port) and out of it.
      b+="add rule bridge $prefix loss oifname $(ports "$n") numgen random mod 100 < $pct drop"$'\n'
      b+="add rule bridge $prefix loss iifname $(ports "$n") numgen random mod 100 < $pct drop"$'\n'
    fi
  done <"$st/loss"
  mark
  printf '%s' "$b" | nft_sw -f -
}

pidfile() { echo "$st/node-$1.pid"; }

signal_node() {
  local n="$1" sig="$2" f
  check_node "$n"
  f=$(pidfile "$n")
  [ -f "$f" ] || rl_die "no pid file $f (nodes started by 'ringlab run' have one)"
  rl_pid_is_ours "$prefix" "$(cat "$f")" || rl_die "node $n (pid $(cat "$f")) is not running in $(rl_ns "$prefix" "$n")"
  mark
  kill "-$sig" "$(cat "$f")" || rl_die "node $n (pid $(cat "$f")) is not running"
}

case "$action" in
  isolate)
    [ $# -eq 1 ] || rl_die "usage: isolate NODE[,NODE...]"
    IFS=, read -r -a iso <<<"$1"
    for n in "${iso[@]}"; do
      check_node "$n"
      for o in $(nodes_all); do
        block "$n" "$o"
        block "$o" "$n"
      done
    done
    apply
    report isolate "$1"
    ;;
  split)
    [ $# -ge 2 ] || rl_die "usage: split A,B C,D,E [...]"
    declare -A group=()
    g=0
    for arg in "$@"; do
      g=$((g + 1))
      IFS=, read -r -a members <<<"$arg"
      for n in "${members[@]}"; do
        check_node "$n"
        group[$n]=$g
      done
    done
    for a in "${!group[@]}"; do
      for b in "${!group[@]}"; do
        [ "${group[$a]}" != "${group[$b]}" ] && block "$a" "$b"
      done
    done
    apply
    report split "$(echo "$@" | tr ' ' '|')"
    ;;
  cut)
    [ $# -ge 2 ] || rl_die "usage: cut A B [--oneway]"
    check_node "$1"
    check_node "$2"
    block "$1" "$2"
    [ "${3:-}" = --oneway ] || block "$2" "$1"
    apply
    report "cut${3:+-oneway}" "$1,$2"
    ;;
  trunk)
    [ "$RL_SHAPE" = two-sites ] || rl_die "trunk needs the two-sites shape"
    case "${1:-}" in
      down) mark; ip -n "$sw" link set "$prefix-tra" down ;;
      up) mark; ip -n "$sw" link set "$prefix-tra" up ;;
      *) rl_die "usage: trunk down|up" ;;
    esac
    report "trunk-$1" ""
    ;;
  link)
    check_node "$1"
    case "${2:-}" in
      down) mark; ip -n "$sw" link set "$(port_now "$1")" down; touch "$st/linkdown-$1" ;;
      up) mark; ip -n "$sw" link set "$(port_now "$1")" up; rm -f "$st/linkdown-$1" ;;
      *) rl_die "usage: link NODE down|up" ;;
    esac
    report "link-$2" "$1"
    ;;
  heal)
    heal
    report heal ""
    ;;
  loss)
    [ $# -eq 2 ] || [ $# -eq 3 ] || rl_die "usage: loss NODE|all PCT [BURST]"
    [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -le 100 ] || rl_die "loss must be 0-100 (percent)"
    burst="${3:-0}"
    [[ "$burst" =~ ^[0-9]+$ ]] || rl_die "burst must be a whole number of frames"
    if [ "$1" = all ]; then targets=$(nodes_all); else check_node "$1"; targets=$1; fi
    if [ "$burst" -gt 1 ] && [ "$2" != 0 ]; then
      # Bursty: no numgen rule for these; a relay on each target's link.
      loss "$1" 0
      loss_apply
      toward=both
      [ "$1" = all ] && toward=a
      for n in $targets; do impair "$n" loss "$2" "$burst" "$toward"; done
    else
      loss "$1" "$2"
      loss_apply
      # Uniform (or none): a bursty loss on these links before goes.
      for n in $targets; do
        grep -q '^loss ' "$st/impair-$n" 2>/dev/null && impair "$n" loss 0
      done
    fi
    report loss "$1"
    ;;
  delay)
    [ $# -ge 2 ] || rl_die "usage: delay NODE MS [JITTER_MS]"
    impair "$1" delay "$2" "${3:-0}"
    report delay "$1"
    ;;
  reorder)
    [ $# -ge 2 ] || rl_die "usage: reorder NODE PCT [GAP_MS]"
    impair "$1" reorder "$2" "${3:-10}"
    report reorder "$1"
    ;;
  duplicate)
    [ $# -eq 2 ] || rl_die "usage: duplicate NODE PCT"
    impair "$1" duplicate "$2"
    report duplicate "$1"
    ;;
  clear)
    heal
    : >"$st/loss"
    loss_apply
    for n in $(nodes_all); do
      if [ -s "$st/impair-$n" ]; then
        : >"$st/impair-$n"
        impair "$n" delay 0
      fi
    done
    report clear ""
    ;;
  kill) signal_node "$1" KILL; report kill "$1" ;;
  pause) signal_node "$1" STOP; report pause "$1" ;;
  resume) signal_node "$1" CONT; report resume "$1" ;;
  restart)
    check_node "$1"
    f=$(pidfile "$1")
    [ -f "$st/node-$1.cmd" ] || rl_die "no command file $st/node-$1.cmd"
    mark
    if [ -f "$f" ] && rl_pid_is_ours "$prefix" "$(cat "$f")"; then
      kill -KILL "$(cat "$f")"
    fi
    # shellcheck disable=SC2046
    ip netns exec "$(rl_ns "$prefix" "$1")" $(cat "$st/node-$1.cmd") >>"$st/node-$1.log" 2>&1 &
    echo $! >"$f"
    report restart "$1"
    ;;
  *)
    sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
