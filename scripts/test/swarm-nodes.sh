#!/usr/bin/env bash
# Extra Docker engines on this machine, each in its own network namespace on one host bridge:
# the nodes of a test swarm. Privileged containers are refused here, so Docker-in-Docker is not
# an option; one dockerd per namespace is (../shared/TOOLING.md).
set -euo pipefail

usage() {
  cat <<USAGE
Usage: scripts/test/swarm-nodes.sh up N | down | kill I | env I

  up N     starts engines 1..N: namespace webhook-swarm-I, address $SUBNET_PREFIX.(10+I) on the
           bridge $BRIDGE ($SUBNET_PREFIX.1, the host), socket $STATE/nodeI/docker.sock
  down     stops every engine (leaving any swarm first) and removes what up made
  kill I   kills engine I and its containers at once, as a node that loses power
  env I    prints DOCKER_HOST for engine I
Settings (environment, defaults shown):
  SWARM_STATE=$STATE   engines' data, run and log files
  SWARM_INSECURE_REGISTRY=${SWARM_INSECURE_REGISTRY:-}   a plain-HTTP registry the engines pull from
Needs root, dockerd (Debian's docker.io), fuse-overlayfs, iproute2 and iptables.
USAGE
}

STATE=${SWARM_STATE:-/var/lib/webhook-swarm}
BRIDGE=wbswarm0
SUBNET_PREFIX=10.77.0
log() { echo "swarm-nodes: $*" >&2; }

node_address() { echo "$SUBNET_PREFIX.$((10 + $1))"; }

bridge_up() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$SUBNET_PREFIX.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
  fi
  # The host forwards nothing by default (FORWARD DROP) and bridged frames pass iptables.
  iptables -C DOCKER-USER -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null ||
    iptables -I DOCKER-USER -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
}

node_up() { # I
  local i=$1 ns=webhook-swarm-$1 dir=$STATE/node$1 address
  address=$(node_address "$i")
  mkdir -p "$dir/data" "$dir/exec"
  if [[ ! -e "/var/run/netns/$ns" ]]; then
    ip netns add "$ns"
    ip link add "wbsw$i" type veth peer name eth0 netns "$ns"
    ip link set "wbsw$i" master "$BRIDGE" up
    ip -n "$ns" addr add "$address/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" route add default via "$SUBNET_PREFIX.1"
  fi
  local registries="[]"
  [[ -n "${SWARM_INSECURE_REGISTRY:-}" ]] && registries="[\"$SWARM_INSECURE_REGISTRY\"]"
  cat >"$dir/daemon.json" <<JSON
{"storage-driver": "fuse-overlayfs", "insecure-registries": $registries, "mtu": 1400,
 "log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "2"}}
JSON
  # nsenter --net, not ip netns exec: that remounts /sys and dockerd then finds no cgroups.
  # Each engine's iptables rules (NAT for its containers, published ports) stay in its namespace;
  # a host name of its own (its own UTS namespace) names the node in the swarm.
  # shellcheck disable=SC2016 # the inner shell expands its own arguments
  nsenter --net="/var/run/netns/$ns" unshare --uts sh -c 'hostname "$1" && shift && exec "$@"' sh \
    "webhook-node$i" dockerd --config-file "$dir/daemon.json" \
    --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
    -H "unix://$dir/docker.sock" --cgroup-parent "webhook-swarm-node$i" \
    >"$dir/dockerd.log" 2>&1 &
  for _ in $(seq 1 100); do
    docker -H "unix://$dir/docker.sock" info >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  log "engine $i did not start: $(tail -5 "$dir/dockerd.log")"
  return 1
}

node_kill() { # I
  local dir=$STATE/node$1 pid
  pid=$(cat "$dir/dockerd.pid" 2>/dev/null) || return 0
  # Off the network first, as a machine that loses power, then the engine, its containerd and
  # shims (named by their paths) and every process of its containers (by their cgroups).
  ip link set "wbsw$1" down 2>/dev/null || true
  kill -KILL "$pid" 2>/dev/null || true
  pkill -KILL -f -- "$dir/" 2>/dev/null || true
  cat /sys/fs/cgroup/*/"webhook-swarm-node$1"/*/cgroup.procs 2>/dev/null | sort -u | xargs -r kill -KILL 2>/dev/null || true
}

node_down() { # I
  local i=$1 ns=webhook-swarm-$1 dir=$STATE/node$1 pid
  if pid=$(cat "$dir/dockerd.pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null; then
    docker -H "unix://$dir/docker.sock" swarm leave --force >/dev/null 2>&1 || true
    docker -H "unix://$dir/docker.sock" ps -aq 2>/dev/null |
      xargs -r docker -H "unix://$dir/docker.sock" rm -f >/dev/null 2>&1 || true
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  node_kill "$i"
  # Mounts the engine left (container layers, netns files of its networks).
  grep -F " $dir/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  ip link del "wbsw$i" 2>/dev/null || true
  rm -rf "$dir"
}

case "${1:-}" in
  up)
    [[ "${2:-}" =~ ^[1-9]$ ]] || { usage; exit 2; }
    bridge_up
    for i in $(seq 1 "$2"); do
      node_up "$i"
      log "engine $i: $(node_address "$i"), unix://$STATE/node$i/docker.sock"
    done
    ;;
  down)
    for dir in "$STATE"/node*; do
      [[ -d "$dir" ]] && node_down "${dir##*node}"
    done
    iptables -D DOCKER-USER -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null || true
    ip link del "$BRIDGE" 2>/dev/null || true
    ;;
  kill) node_kill "${2:?engine number}" ;;
  env) echo "DOCKER_HOST=unix://$STATE/node${2:?engine number}/docker.sock" ;;
  -h|--help) usage ;;
  *) usage; exit 2 ;;
esac
