#!/usr/bin/env bash
# A lab of "remote hosts" on this machine, for the ssh backend's tests: one network namespace
# per host (topo.sh's lan), each running its own OpenSSH server, reached from the root
# namespace only through a ProxyCommand that enters the namespace (`ip netns exec ... nc`),
# so nothing gets an address in the root namespace.
#
#   ssh-lab.sh up --nodes N [--prefix P]   prints the inventory's path
#   ssh-lab.sh down [--prefix P]           stops the sshds (by PID), removes the namespaces,
#                                          the keys and everything else the lab made; safe
#                                          to run twice
#
# Made under /run/ringlab-P/ssh/ (removed by down): a throw-away host key, a throw-away client
# key authorised for root on every lab host, a known_hosts file naming each host by its
# inventory name (HostKeyAlias), one sshd_config per host, and hosts.toml, the inventory.
# Each sshd listens on its namespace's address only (10.77.0.i:22), allows only that key, no
# passwords, and writes its PID file into the state directory, where topo.sh down finds it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"

cmd="${1:-}"
[ -n "$cmd" ] && shift || true
prefix=rl
nodes=""
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) nodes="$2"; shift 2 ;;
    --prefix) prefix="$2"; shift 2 ;;
    *) rl_die "unknown argument '$1'" ;;
  esac
done
rl_need_root
rl_check_prefix "$prefix"
st=$(rl_state "$prefix")
dir="$st/ssh"
sshd=$(command -v sshd || echo /usr/sbin/sshd)

down() {
  # The privilege-separation directory sshd needs, if the lab made it (and it is empty).
  local made_sep=""
  [ -f "$dir/made-run-sshd" ] && made_sep=1
  bash "$here/topo.sh" down --prefix "$prefix"
  if [ -n "$made_sep" ]; then rmdir /run/sshd 2>/dev/null || true; fi
}

up() {
  [[ "$nodes" =~ ^[0-9]+$ ]] && [ "$nodes" -ge 1 ] && [ "$nodes" -le 250 ] || rl_die "--nodes 1-250"
  [ -x "$sshd" ] || rl_die "no sshd (apt-get install openssh-server)"
  command -v nc >/dev/null || rl_die "no nc (apt-get install netcat-openbsd)"
  command -v ssh-keygen >/dev/null || rl_die "no ssh-keygen (apt-get install openssh-client)"
  trap 'down >/dev/null 2>&1' ERR
  bash "$here/topo.sh" up --nodes "$nodes" --shape lan --prefix "$prefix" >/dev/null
  mkdir -m 700 "$dir"
  if [ ! -d /run/sshd ]; then
    mkdir -m 755 /run/sshd && touch "$dir/made-run-sshd"
  fi
  ssh-keygen -q -t ed25519 -N '' -C "ringlab-lab-$prefix-host" -f "$dir/host_key"
  ssh-keygen -q -t ed25519 -N '' -C "ringlab-lab-$prefix-client" -f "$dir/id"
  cp "$dir/id.pub" "$dir/authorized_keys"
  : > "$dir/known_hosts"
  {
    echo "# The ssh-lab's inventory (netns-scripts/ssh-lab.sh, prefix $prefix): host hI is namespace $prefix-nI."
    echo "[ssh]"
    echo "user = \"root\""
    echo "identity = \"$dir/id\""
    echo "config = \"/dev/null\""
    echo "known_hosts = \"$dir/known_hosts\""
  } > "$dir/hosts.toml"
  for i in $(seq 1 "$nodes"); do
    addr=$(rl_addr "$i")
    ns=$(rl_ns "$prefix" "$i")
    cat > "$dir/sshd-$i.conf" <<CONF
ListenAddress $addr:22
HostKey $dir/host_key
PidFile $st/sshd-$i.pid
AuthorizedKeysFile $dir/authorized_keys
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers root
StrictModes no
UsePAM no
MaxStartups 50:30:100
MaxSessions 20
CONF
    ip netns exec "$ns" "$sshd" -f "$dir/sshd-$i.conf"
    echo "h$i $(cat "$dir/host_key.pub")" >> "$dir/known_hosts"
    {
      echo
      echo "[[host]]"
      echo "name = \"h$i\""
      echo "address = \"$addr\""
      echo "proxy_command = \"ip netns exec $ns nc $addr 22\""
      echo "iface = \"$prefix-e0\""
      echo "ring_addr = \"$addr\""
      echo "nodes = [$i]"
    } >> "$dir/hosts.toml"
  done
  # Every sshd answers before the lab is said to be up.
  for i in $(seq 1 "$nodes"); do
    ok=""
    for _ in $(seq 1 100); do
      if ip netns exec "$(rl_ns "$prefix" "$i")" bash -c "exec 3<>/dev/tcp/$(rl_addr "$i")/22" 2>/dev/null; then ok=1; break; fi
      sleep 0.05
    done
    [ -n "$ok" ] || rl_die "sshd of h$i never listened"
  done
  trap - ERR
  echo "$dir/hosts.toml"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  *) rl_die "usage: ssh-lab.sh up --nodes N [--prefix P] | down [--prefix P]" ;;
esac
