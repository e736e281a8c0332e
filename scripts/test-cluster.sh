#!/usr/bin/env bash
# The tests' own multi-node swarm: several dockerd on this machine, each in its own network
# and UTS namespace (its own address and hostname), with its own data-root, exec-root and
# socket, joined over a private bridge; and a real registry (Debian's docker-registry) on
# that bridge that every node pulls from. The user's own dockerd is never touched.
#
#   scripts/test-cluster.sh up DIR [WORKERS [MANAGERS]]   start; prints KEY=VALUE lines
#   scripts/test-cluster.sh down DIR                      stop and remove everything
#   scripts/test-cluster.sh sweep                         remove clusters whose owner died
#   scripts/test-cluster.sh kill-node DIR NODE            a machine crash: every process of
#                                                         the node (dockerd, containers) killed
#   scripts/test-cluster.sh stop-node DIR NODE            its dockerd stopped cleanly
#   scripts/test-cluster.sh start-node DIR NODE           its dockerd again (it rejoins)
#
# `up` writes DIR/cluster.env (NODES, SOCKET_<node>, ADDR_<node>, REGISTRY, BRIDGE, ...)
# and DIR/owner (the PID whose death makes the cluster a leftover: $CLUSTER_OWNER, else
# the caller). Names derive from DIR, so two clusters never share a bridge or namespace.
# Recipe and measurements: ../shared/TESTING.md ("A multi-node swarm on one machine").
set -euo pipefail

BASE=/run/swarmbot-test-clusters
log() { echo "test-cluster: $*" >&2; }

ids() {  # short names from the directory: Linux interface names stop at 15 characters
  local h
  h=$(printf '%s' "$1" | sha1sum | cut -c1-5)
  BR="sbc$h"
  NS="sbc$h"
}

down() {
  local dir=$1 pidfile pid ns link
  [ -d "$dir" ] || return 0
  ids "$dir"
  for pidfile in "$dir"/*/dockerd.pid "$dir"/registry.pid; do
    [ -s "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
  done
  for pidfile in "$dir"/*/dockerd.pid "$dir"/registry.pid; do
    [ -s "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  # Whatever the daemons left mounted under the directory (overlay layers, netns files).
  awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r \
    | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${NS}n" || true); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  # The host ends of the veth pairs: their peers can outlive the namespaces a while.
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 \
    | grep "^${NS}v" || true); do
    ip link del "$link" 2>/dev/null || true
  done
  ip link del "$BR" 2>/dev/null || true
  while iptables -D DOCKER-USER -i "$BR" -o "$BR" -j ACCEPT 2>/dev/null; do :; done
  while iptables -D FORWARD -i "$BR" -o "$BR" -j ACCEPT 2>/dev/null; do :; done
  rm -rf "$dir"
}

sweep() {
  local dir owner
  [ -d "$BASE" ] || return 0
  shopt -s nullglob
  for dir in "$BASE"/*/; do
    dir=${dir%/}
    [ -d "$dir" ] || continue
    owner=$(cat "$dir/owner" 2>/dev/null || echo 0)
    if [ "$owner" = 0 ] || ! kill -0 "$owner" 2>/dev/null; then
      log "removing $dir (its owner $owner is gone)"
      down "$dir"
    fi
  done
}

free_subnet() {  # the first 10.77.K.0/24 no interface here uses
  local used k
  used=$(ip -4 -o addr show | awk '{print $4}')
  for k in $(seq 10 250); do
    grep -q "^10\.77\.$k\." <<<"$used" || { echo "$k"; return; }
  done
  log "no free 10.77.K.0/24 subnet"
  exit 1
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...
  local seconds=$1 what=$2
  shift 2
  for _ in $(seq 1 $((seconds * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  log "timed out after ${seconds}s waiting for $what"
  return 1
}

start_dockerd() {  # start_dockerd DIR NODE: the node's dockerd in its namespaces
  local dir=$1 name=$2 d ns registry
  d=$dir/$name
  ns=$(cat "$d/netns")
  registry=$(cat "$dir/registry.addr")
  # nsenter, not `ip netns exec` (which remounts /sys: "Devices cgroup isn't mounted").
  nsenter --net="/var/run/netns/$ns" unshare --uts -- sh -c "hostname $name; exec dockerd \
    --data-root $d/data --exec-root $d/exec --pidfile $d/dockerd.pid \
    -H unix://$d/docker.sock --bridge=none --iptables=false --ip-masq=false \
    --insecure-registry $registry" >>"$d/dockerd.log" 2>&1 8>&- 9>&- &
}

stop_node() {  # a clean stop of the node's dockerd (SIGTERM), as `systemctl stop docker`
  local dir=$1 name=$2 pid
  pid=$(cat "$dir/$name/dockerd.pid" 2>/dev/null || true)
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$dir/$name/dockerd.pid"
}

kill_node() {
  local dir=$1 name=$2 ns
  ns=$(cat "$dir/$name/netns")
  # A process listed may exit before its kill (a health check's exec): not a failure.
  ip netns pids "$ns" | xargs -r kill -9 2>/dev/null || true
  rm -f "$dir/$name/dockerd.pid" "$dir/$name/exec/docker.pid"
}

up() {
  local dir=$1 workers=${2:-2} managers=${3:-1}
  mkdir -p "$BASE"
  # One set-up at a time: two clusters starting together would pick the same subnet.
  exec 8>"$BASE/.lock"
  flock 8
  sweep
  mkdir -p "$dir"
  echo "${CLUSTER_OWNER:-$PPID}" >"$dir/owner"
  ids "$dir"
  local k gw registry
  k=$(free_subnet)
  gw=10.77.$k.254
  registry=$gw:5000
  echo "$registry" >"$dir/registry.addr"
  ip link add "$BR" type bridge
  ip addr add "$gw/24" dev "$BR"
  ip link set "$BR" up
  flock -u 8  # the subnet is taken now
  # Once dockerd runs, the host's FORWARD policy is DROP: let the bridge's traffic through.
  iptables -I DOCKER-USER -i "$BR" -o "$BR" -j ACCEPT 2>/dev/null \
    || iptables -I FORWARD -i "$BR" -o "$BR" -j ACCEPT

  mkdir -p "$dir/registry-data"
  cat >"$dir/registry.yml" <<YAML
version: 0.1
storage:
  filesystem: {rootdirectory: $dir/registry-data}
  delete: {enabled: true}
http:
  addr: $registry
log: {level: error}
YAML
  docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 8>&- &
  echo $! >"$dir/registry.pid"

  local names=() i=0 name token
  for i in $(seq 1 "$managers"); do names+=("manager$i"); done
  for i in $(seq 1 "$workers"); do names+=("worker$i"); done
  i=0
  for name in "${names[@]}"; do
    i=$((i + 1))
    local d=$dir/$name ns=${NS}n$i addr=10.77.$k.$i
    mkdir -p "$d"
    ip netns add "$ns"
    ip link add "${NS}v$i" type veth peer name "${NS}p$i"
    ip link set "${NS}v$i" master "$BR" up
    ip link set "${NS}p$i" netns "$ns"
    ip netns exec "$ns" ip addr add "$addr/24" dev "${NS}p$i"
    ip netns exec "$ns" ip link set "${NS}p$i" up
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip route add default via "$gw"
    echo "$ns" >"$d/netns"
    start_dockerd "$dir" "$name"
    {
      echo "SOCKET_$name=$d/docker.sock"
      echo "ADDR_$name=$addr"
      echo "NETNS_$name=$ns"
    } >>"$dir/cluster.env.part"
  done
  for name in "${names[@]}"; do
    wait_for 60 "dockerd of $name" docker -H "unix://$dir/$name/docker.sock" info
  done
  wait_for 20 "the registry" curl -fsS "http://$registry/v2/"

  local first=${names[0]} sock
  sock=unix://$dir/$first/docker.sock
  docker -H "$sock" swarm init --advertise-addr "10.77.$k.1" \
    --listen-addr "10.77.$k.1:2377" >/dev/null
  local mtoken wtoken
  mtoken=$(docker -H "$sock" swarm join-token -q manager)
  wtoken=$(docker -H "$sock" swarm join-token -q worker)
  i=0
  for name in "${names[@]}"; do
    i=$((i + 1))
    [ "$name" = "$first" ] && continue
    token=$wtoken
    [[ $name == manager* ]] && token=$mtoken
    docker -H "unix://$dir/$name/docker.sock" swarm join --token "$token" \
      --advertise-addr "10.77.$k.$i" "10.77.$k.1:2377" >/dev/null
  done
  wait_for 60 "every node to be ready" sh -c \
    "[ \$(docker -H $sock node ls --format '{{.Status}}' | grep -c Ready) -eq ${#names[@]} ]"
  {
    echo "NODES=${names[*]}"
    echo "MANAGER=$first"
    echo "REGISTRY=$registry"
    echo "BRIDGE=$BR"
    echo "SUBNET=10.77.$k.0/24"
    cat "$dir/cluster.env.part"
  } >"$dir/cluster.env"
  rm -f "$dir/cluster.env.part"
  cat "$dir/cluster.env"
}

case ${1:-} in
  up) up "${2:?DIR}" "${3:-2}" "${4:-1}" ;;
  down) down "${2:?DIR}" ;;
  sweep) sweep ;;
  kill-node) kill_node "${2:?DIR}" "${3:?NODE}" ;;
  stop-node) stop_node "${2:?DIR}" "${3:?NODE}" ;;
  start-node)
    start_dockerd "${2:?DIR}" "${3:?NODE}"
    wait_for 60 "dockerd of $3" docker -H "unix://$2/$3/docker.sock" info
    ;;
  *) echo "usage: $0 up DIR [WORKERS [MANAGERS]] | down DIR | sweep | kill-node DIR NODE |" \
    "stop-node DIR NODE | start-node DIR NODE" >&2; exit 2 ;;
esac
