#!/usr/bin/env bash
# Make sure a local one-node swarm is up and a busybox image is built from scratch.
#   scripts/local-swarm.sh RUN_DIR IMAGE
# Starts dockerd only if no daemon answers (writing RUN_DIR/dockerd.pid so whoever started
# it can stop it), runs `docker swarm init` on loopback if the node is not in a swarm, and
# builds IMAGE from /bin/busybox (no registry is needed or reachable).
set -euo pipefail
run_dir=${1:?usage: local-swarm.sh RUN_DIR IMAGE}
image=${2:?usage: local-swarm.sh RUN_DIR IMAGE}
mkdir -p "$run_dir"
# Test processes running side by side (pytest-xdist) set the swarm up once, not at once.
exec 9>/tmp/swarmbot-local-swarm.lock
flock 9

# A dockerd that was killed leaves its overlay network namespaces and vxlan interfaces
# behind; the next dockerd then fails every overlay task with "error creating vxlan
# interface: file exists". With no dockerd running they belong to nobody: remove them.
clean_stale_overlay() {
  pgrep -x dockerd >/dev/null && return 0
  for ns in /var/run/docker/netns/*; do
    [ -e "$ns" ] || continue
    umount "$ns" 2>/dev/null || true
    rm -f "$ns"
  done
  if command -v ip >/dev/null; then
    for link in $(ip -o link show type vxlan 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep '^vx-'); do
      ip link delete "$link" 2>/dev/null || true
    done
  fi
}

if ! docker info >/dev/null 2>&1; then
  clean_stale_overlay
  echo "local-swarm: starting dockerd (log: $run_dir/dockerd.log)" >&2
  # (9>&-: the daemon must not inherit, and so hold forever, the set-up lock)
  DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 setsid dockerd >"$run_dir/dockerd.log" 2>&1 < /dev/null 9>&- &
  echo $! >"$run_dir/dockerd.pid"
  for _ in $(seq 1 150); do
    docker info >/dev/null 2>&1 && break
    sleep 0.2
  done
  docker info >/dev/null 2>&1 || { echo "local-swarm: dockerd did not start" >&2; tail -20 "$run_dir/dockerd.log" >&2; exit 1; }
fi

if [ "$(docker info -f '{{.Swarm.LocalNodeState}}')" != active ]; then
  echo "local-swarm: docker swarm init" >&2
  docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377 >/dev/null
fi

if ! docker image inspect "$image" >/dev/null 2>&1; then
  echo "local-swarm: building $image" >&2
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  cp /bin/busybox "$ctx/busybox"
  cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN ["/bin/mkdir", "-p", "/tmp", "/var/www"]
CMD ["/bin/sh"]
DOCKERFILE
  out=$(DOCKER_BUILDKIT=0 docker build -q -t "$image" "$ctx" 2>&1) || { echo "$out" >&2; exit 1; }
fi
