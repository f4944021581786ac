# Shared by topo.sh and fault.sh; sourced, never run.
#
# Address plan (the one range every ringlab namespace uses): node i (1..250) is 10.77.0.i/24
# on its interface `<prefix>-e0` inside namespace `<prefix>-n<i>`; multicast group
# 239.77.0.1 (TTL 1 is set by the nodes). Nothing is ever created in the root namespace:
# bridges, trunks and relay ports live in namespace `<prefix>-sw`, carry no address and join
# no physical interface. No namespace has a default route; forwarding stays off in all of them.

RL_NET=10.77.0
RL_MCAST=239.77.0.1

rl_die() {
  echo "$(basename "$0"): $*" >&2
  exit 2
}

rl_need_root() {
  if [ "$(id -u)" != 0 ]; then
    rl_die "needs root (network namespaces and nftables); without root, use 'ringlab cluster' on loopback"
  fi
  command -v ip >/dev/null || rl_die "needs iproute2 ('ip'): apt-get install iproute2"
}

rl_check_prefix() {
  [[ "$1" =~ ^[a-z][a-z0-9]{0,5}$ ]] || rl_die "prefix '$1' must be 1-6 characters, a-z then a-z0-9"
}

# State directory of a topology: shape, node count, relay pids, node pids.
rl_state() { echo "/run/ringlab-$1"; }

rl_ns() { echo "$1-n$2"; }
rl_sw() { echo "$1-sw"; }
rl_addr() { echo "$RL_NET.$1"; }

# Prints a monotonic clock reading in ns (CLOCK_MONOTONIC, the clock node records use).
rl_now_ns() {
  local bin="${RINGLAB_BIN:-}"
  if [ -z "$bin" ]; then
    for c in "$(dirname "$0")/../target/release/ringlab" "$(dirname "$0")/../target/debug/ringlab" "$(command -v ringlab || true)"; do
      if [ -n "$c" ] && [ -x "$c" ]; then bin="$c"; break; fi
    done
  fi
  if [ -n "$bin" ]; then
    "$bin" clock
  else
    # Fallback with 10 ms resolution: /proc/uptime is not CLOCK_MONOTONIC, so say so.
    echo "unknown(no ringlab binary; set RINGLAB_BIN)"
  fi
}

# Reads the saved shape and node count of topology $1 into RL_SHAPE and RL_NODES.
rl_load() {
  local st
  st=$(rl_state "$1")
  [ -f "$st/topology" ] || rl_die "no topology with prefix '$1' (run topo.sh up first)"
  # shellcheck disable=SC1091
  . "$st/topology"
}
