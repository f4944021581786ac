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

# A prefix is 1-10 characters, a-z then a-z0-9: no '-', so no prefix's names match another's,
# and the longest interface name, '<P>-p250' (likewise '<P>-q250', '<P>-r250'), fits Linux's
# 15 characters. 'ringlab run' makes a fresh one per run by default: rl<PID>.
rl_check_prefix() {
  [[ "$1" =~ ^[a-z][a-z0-9]{0,9}$ ]] || rl_die "prefix '$1' must be 1-10 characters, a-z then a-z0-9"
}

# State directory of a topology: shape, node count, relay pids, node pids, the run's key.
rl_state() { echo "/run/ringlab-$1"; }

# The lock a 'ringlab run' holds on its prefix for as long as it runs (flock; the file
# names the holder).
rl_lock() { echo "/run/ringlab-$1.lock"; }

# Refuses prefix $1 while a 'ringlab run' (or another of these scripts) holds it. A run that
# calls these scripts says it holds the lock (RINGLAB_LOCKED_PREFIX). Otherwise this script
# takes the lock as a run does (bench/src/prefix.rs): create the file, flock it, check that
# the file locked is still the one at the path (a holder removes it before letting go), and
# remove it at exit while still holding it.
rl_check_lock() {
  local fd
  [ "${RINGLAB_LOCKED_PREFIX:-}" = "$1" ] && return 0
  RL_LOCK_FILE=$(rl_lock "$1")
  while :; do
    exec {fd}<>"$RL_LOCK_FILE" || rl_die "cannot open the lock $RL_LOCK_FILE"
    if ! flock -n "$fd"; then
      rl_die "prefix '$1' is in use by a ringlab run ($(tr '\n' ' ' <"$RL_LOCK_FILE" 2>/dev/null)); refusing to touch it"
    fi
    [ "$(stat -Lc %d:%i "/proc/self/fd/$fd")" = "$(stat -c %d:%i "$RL_LOCK_FILE" 2>/dev/null)" ] && break
    exec {fd}<&-
  done
  printf 'pid=%s command=%s\n' "$$" "$0 $*" >"$RL_LOCK_FILE"
  trap 'rm -f "$RL_LOCK_FILE"' EXIT
}

# Whether process $2 runs in a namespace of prefix $1 (<P>-n<i> or <P>-sw): a PID file may
# be stale, and its PID reused by a process that is none of ours.
rl_pid_is_ours() {
  local ns
  for ns in $(ip netns identify "$2" 2>/dev/null); do
    [[ "$ns" =~ ^$1-(n[0-9]+|sw)$ ]] && return 0
  done
  return 1
}

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
