#!/usr/bin/env bash
# Build the swarmbot image:   scripts/build-image.sh [TAG]     (default: swarmbot:VERSION)
# Build a Redis image:        scripts/build-image.sh --redis TAG
#
# With Docker Hub and PyPI reachable this is just `docker build -t TAG .`. Without Docker
# Hub (a build host that reaches only a Debian mirror and PyPI, or proxies of them, like
# CI here), the same Dockerfile gets locally made inputs through its build arguments:
#   BASE              Debian bookworm with python3, made with debootstrap and `docker import`
#   DOCKER_CLI_IMAGE  the Dockerfile's pinned docker CLI, taken from a docker CLI of exactly
#                     that version on this host; failing that, Debian's docker.io package
#                     (20.10: no `docker stack config`, so the worker's pre-flight check is
#                     skipped, and this script says so)
#   build/wheels/     every wheel, built on this host with pip (the build container cannot
#                     reach PyPI: it lacks this machine's TLS trust)
# SWARMBOT_BUILD=online|offline chooses; the default is online if the official base image
# is here or can be pulled. Needs root for debootstrap (offline, first time only).
#
# --redis TAG: the stack's Redis for a swarm without Docker Hub: Debian's redis-server on
# the same locally made base (the Debian mirror again, no Docker Hub).
set -euo pipefail
cd "$(dirname "$0")/.."

redis_tag=""
if [ "${1:-}" = --redis ]; then
  redis_tag=${2:?usage: scripts/build-image.sh --redis TAG}
  SWARMBOT_BUILD=offline
fi

version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
tag=${1:-swarmbot:$version}
arg() { sed -n "s/^ARG $1=//p" Dockerfile; }
official_base=$(arg BASE)
official_cli=$(arg DOCKER_CLI_IMAGE)
cli_version=${official_cli##*:}
cli_version=${cli_version%-cli}
local_base=swarmbot-local/python:3.11-bookworm
say() { echo "build-image: $*" >&2; }

# No buildx plugin: use the classic builder rather than fail (it reads the same Dockerfile).
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0

mode=${SWARMBOT_BUILD:-auto}
if [ "$mode" = auto ]; then
  if docker image inspect "$official_base" >/dev/null 2>&1 \
    || timeout 60 docker pull -q "$official_base" >/dev/null 2>&1; then
    mode=online
  else
    mode=offline
  fi
fi

if [ "$mode" = online ]; then
  say "building $tag from $official_base (online)"
  rm -rf build/wheels
  exec docker build -q -t "$tag" .
fi

# -- offline ---------------------------------------------------------------------------
if ! docker image inspect "$local_base" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || {
    say "installing debootstrap"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  say "making $local_base with debootstrap (about a minute, once)"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root" http://deb.debian.org/debian >"$root.log" 2>&1 \
    || { tail -20 "$root.log" >&2; exit 1; }
  rm -f "$root.log"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
  tar -C "$root" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$local_base" >/dev/null
  rm -rf "$root"
  trap - EXIT
fi

if [ -n "$redis_tag" ]; then
  say "building $redis_tag: Debian's redis-server on $local_base"
  printf '%s\n' "FROM $local_base" \
    "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends redis-server >/dev/null && rm -rf /var/lib/apt/lists/*" \
    'CMD ["redis-server"]' | docker build -q -t "$redis_tag" - >/dev/null
  say "built $redis_tag"
  exit 0
fi

# The docker CLI image, made from a binary of the pinned version if this host has one.
cli_image=swarmbot-local/docker-cli:$cli_version
if ! docker image inspect "$cli_image" >/dev/null 2>&1; then
  found=""
  for candidate in "$(command -v docker || true)" /usr/local/bin/docker /usr/bin/docker; do
    [ -x "$candidate" ] || continue
    v=$("$candidate" version --format '{{.Client.Version}}' 2>/dev/null || true)
    if [ "$v" = "$cli_version" ] && ! ldd "$candidate" >/dev/null 2>&1; then  # static only
      found=$candidate
      break
    fi
  done
  ctx=$(mktemp -d)
  if [ -n "$found" ]; then
    say "docker CLI $cli_version from $found"
    cp "$found" "$ctx/docker"
  else
    cli_image=swarmbot-local/docker-cli:debian
    say "WARNING: no static docker CLI $cli_version here; using Debian's docker.io package" \
      "(20.10: no 'docker stack config', so the worker skips its pre-flight check)"
    (cd "$ctx" && apt-get download docker.io >/dev/null && dpkg-deb -x docker.io_*.deb x)
    cp "$ctx/x/usr/bin/docker" "$ctx/docker"
  fi
  printf 'FROM %s\nCOPY docker /usr/local/bin/docker\n' "$local_base" >"$ctx/Dockerfile"
  docker build -q -t "$cli_image" "$ctx" >/dev/null
  rm -rf "$ctx"
fi

# Wheels for the image's Python, built here.
image_py=$(docker run --rm --network none "$local_base" python3 -c \
  'import sys; print("%d.%d" % sys.version_info[:2])')
python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python
host_py=$($python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$image_py" != "$host_py" ]; then
  say "the base image has Python $image_py but $python is $host_py: wheels would not fit"
  exit 1
fi
say "building wheels with $python"
rm -rf build/wheels
wheel() {
  $python -m pip wheel -q --disable-pip-version-check --wheel-dir build/wheels "$@" \
    >build/pip.log 2>&1 || { cat build/pip.log >&2; exit 1; }
}
mkdir -p build
wheel -c requirements.lock '.[matrix,slack]'
# Dependencies behind markers can differ between the host's Python and the image's (redis
# needs async-timeout below 3.11.3, say): ask pip in the base image, offline, what it lacks.
for _ in 1 2 3 4 5; do
  missing=$(docker run --rm --network none -v "$PWD/build/wheels:/wheels:ro" "$local_base" \
    sh -c 'python3 -m venv /tmp/v && /tmp/v/bin/pip install --dry-run --no-index \
      --disable-pip-version-check --find-links /wheels "swarmbot[matrix,slack]" 2>&1' \
    | sed -n 's/.*No matching distribution found for \([^;]*\).*/\1/p' | head -1 || true)
  [ -z "$missing" ] && break
  say "the image's Python also needs $missing"
  wheel -c requirements.lock "$missing"
done

say "building $tag from $local_base (offline)"
docker build -q -t "$tag" \
  --build-arg BASE="$local_base" --build-arg DOCKER_CLI_IMAGE="$cli_image" . >/dev/null
say "built $tag"
