#!/usr/bin/env bash
# Network-namespace topologies for ringlab clusters on one machine.
#
#   topo.sh up --nodes N --shape lan|two-sites|star [--prefix P]
#   topo.sh down [--prefix P]      removes the prefix's namespaces (and with them every link,
#                                  bridge and nftables table made), the processes in them and
#                                  its state directory; safe to run twice
#   topo.sh status [--prefix P]
#
# Shapes (all on 10.77.0.0/24, node i at 10.77.0.i; see lib.sh for the address plan):
#   lan        every node's link on one bridge.
#   two-sites  two bridges (site a: nodes 1..N/2, site b: the rest) joined by one trunk link,
#              so that taking the trunk down (fault.sh trunk down) is a clean split.
#   star       every node on its own link to a central point, where fault.sh cuts single
#              links, one direction or both, so partial connectivity can be built. With
#              veth links this is wired as lan is (one port per node on one bridge, every
#              fault applied at the centre); the shape names the intent, and 'link N down'
#              takes a node's link down at the centre (carrier lost).
# The prefix (default "rl"; 'ringlab run' makes a fresh one per run) starts every namespace
# and interface name and names the nftables table. Nothing is created in the root namespace,
# so down removes nothing there; no default route, no forwarding, no NAT. up and down refuse
# a prefix that a running 'ringlab run' holds (its lock, /run/ringlab-P.lock).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"

cmd="${1:-}"
[ -n "$cmd" ] && shift || true
prefix=rl
nodes=""
shape=lan
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) nodes="$2"; shift 2 ;;
    --shape) shape="$2"; shift 2 ;;
    --prefix) prefix="$2"; shift 2 ;;
    *) rl_die "unknown argument '$1'" ;;
  esac
done
rl_check_prefix "$prefix"
st=$(rl_state "$prefix")
sw=$(rl_sw "$prefix")

down() {
  # Relays and nodes started into our namespaces, by their recorded PIDs first, politely;
  # a PID that is no longer in one of our namespaces is stale and left alone.
  if [ -d "$st" ]; then
    for f in "$st"/*.pid; do
      [ -f "$f" ] || continue
      pid=$(cat "$f")
      if [[ "$pid" =~ ^[0-9]+$ ]] && rl_pid_is_ours "$prefix" "$pid"; then
        kill -CONT "$pid" 2>/dev/null || true
        kill -TERM "$pid" 2>/dev/null || true
      fi
    done
  fi
  # Then whatever still runs inside a namespace of ours (only this project creates them: the
  # prefix says so, and the lock makes it one run's), by PID; a namespace is not freed while
  # a process holds it. Deleting a namespace deletes its links, bridges and nftables table.
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${prefix}-(n[0-9]+|sw)$" || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null || true); do
      kill -CONT "$pid" 2>/dev/null || true
      kill -KILL "$pid" 2>/dev/null || true
    done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$st"
}

status() {
  if [ -f "$st/topology" ]; then
    # shellcheck disable=SC1091
    . "$st/topology"
    echo "topology $prefix: shape $RL_SHAPE, $RL_NODES nodes"
  else
    echo "topology $prefix: not up"
  fi
  echo "namespaces:"
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${prefix}-" | sed 's/^/  /' || true
  if ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$sw"; then
    echo "links in $sw:"
    ip -n "$sw" -br link show | grep -E "^${prefix}-" | sed 's/^/  /' || true
  fi
  if ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$sw"; then
    echo "fault rules: $(ip netns exec "$sw" nft list table bridge "$prefix" 2>/dev/null | grep -c drop || true)"
  fi
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${prefix}-n[0-9]+$" || true); do
    addr=$(ip -n "$ns" -br -4 addr show dev "$prefix-e0" 2>/dev/null | awk '{print $3}')
    echo "  $ns $addr"
  done
  for f in "$st"/*.pid; do
    [ -f "$f" ] || continue
    echo "  process $(basename "$f" .pid): pid $(cat "$f")"
  done
}

up() {
  [ -n "$nodes" ] || rl_die "--nodes N is required"
  [[ "$nodes" =~ ^[0-9]+$ ]] && [ "$nodes" -ge 1 ] && [ "$nodes" -le 250 ] || rl_die "--nodes must be 1-250"
  case "$shape" in lan | two-sites | star) ;; *) rl_die "--shape must be lan, two-sites or star" ;; esac
  command -v nft >/dev/null || rl_die "needs nftables ('nft'): apt-get install nftables"
  if ip netns list 2>/dev/null | awk '{print $1}' | grep -qE "^${prefix}-"; then
    rl_die "namespaces with prefix '$prefix' exist; run 'topo.sh down --prefix $prefix' first"
  fi
  mkdir -p "$st"
  printf 'RL_SHAPE=%s\nRL_NODES=%s\n' "$shape" "$nodes" >"$st/topology"
  # A failure half-way removes what was made.
  trap 'echo "topo.sh: up failed; tearing down" >&2; down' ERR

  ip netns add "$sw"
  ip -n "$sw" link set lo up
  ip netns exec "$sw" sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0
  case "$shape" in
    lan | star)
      ip -n "$sw" link add "$prefix-br0" type bridge
      ip -n "$sw" link set "$prefix-br0" up
      ;;
    two-sites)
      for s in a b; do
        ip -n "$sw" link add "$prefix-br$s" type bridge
        ip -n "$sw" link set "$prefix-br$s" up
      done
      ip -n "$sw" link add "$prefix-tra" type veth peer name "$prefix-trb"
      ip -n "$sw" link set "$prefix-tra" master "$prefix-bra" up
      ip -n "$sw" link set "$prefix-trb" master "$prefix-brb" up
      ;;
  esac
  # Snooping off: every port hears the ring's multicast group, as on a plain switch.
  for br in $(ip -n "$sw" -br link show type bridge | awk '{print $1}'); do
    ip -n "$sw" link set "$br" type bridge mcast_snooping 0 stp_state 0 forward_delay 0
  done
  local half=$((nodes / 2))
  for i in $(seq 1 "$nodes"); do
    local ns
    ns=$(rl_ns "$prefix" "$i")
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0 \
      net.ipv6.conf.all.disable_ipv6=1
    ip link add "$prefix-e0" netns "$ns" type veth peer name "$prefix-p$i" netns "$sw"
    ip -n "$ns" addr add "$(rl_addr "$i")/24" dev "$prefix-e0"
    ip -n "$ns" link set "$prefix-e0" up
    # The ring's multicast stays on this link (the nodes also name the interface).
    ip -n "$ns" route add 224.0.0.0/4 dev "$prefix-e0"
    local br="$prefix-br0"
    if [ "$shape" = two-sites ]; then
      if [ "$i" -le "$half" ]; then br="$prefix-bra"; else br="$prefix-brb"; fi
    fi
    ip -n "$sw" link set "$prefix-p$i" master "$br" up
  done
  # The fault table: every frame between two nodes crosses a bridge here, so fault.sh
  # applies each fault as one atomic nftables transaction in this one table.
  ip netns exec "$sw" nft -f - <<EOF
table bridge $prefix {
  chain cuts { }
  chain loss { }
  chain forward { type filter hook forward priority 0; policy accept; jump cuts; jump loss; }
}
EOF
  trap - ERR
  echo "topology $prefix up: shape $shape, $nodes nodes, $(rl_addr 1)-$(rl_addr "$nodes"), namespaces $prefix-n1..$prefix-n$nodes"
}

case "$cmd" in
  up) rl_need_root; rl_check_lock "$prefix"; up ;;
  down) rl_need_root; rl_check_lock "$prefix"; down; echo "topology $prefix down" ;;
  status) rl_need_root; status ;;
  *) echo "usage: topo.sh up --nodes N --shape lan|two-sites|star [--prefix P] | down [--prefix P] | status [--prefix P]" >&2; exit 2 ;;
esac
