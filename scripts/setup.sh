#!/usr/bin/env bash
# Install what swarmbot needs on a Debian 12 machine (run as root): the Docker engine, Redis,
# a static busybox for local test images, debootstrap for the image's base when no registry
# is reachable, and the project's Python environment in .venv.
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# The tests' own multi-node swarm (scripts/test-cluster.sh): a registry, and iptables.
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)  # the image's base, offline
# What docs/OPERATING.md's install commands use (the container test runs them as written).
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v jq >/dev/null 2>&1 || need+=(jq)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# The tests' SSH git server (tests/gitserver.py runs its own sshd on loopback).
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
# The alert tests' real Alertmanager (tests/alertmanager.py starts its own on loopback).
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  apt-get update -qq
  # No package may start a service here (openssh-server would start sshd on port 22):
  # Debian's policy-rc.d says no to every start while this install runs.
  policy=/usr/sbin/policy-rc.d
  ours=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && ours=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ -z "$ours" ] || rm -f "$policy"
fi

# The Python environment, rebuilt when pyproject.toml or the lock changes: the exact
# versions in requirements.lock (`make lock` renews it), so two installs never differ.
if [ ! -x .venv/bin/swarmbot ] || [ pyproject.toml -nt .venv/.installed ] \
  || [ requirements.lock -nt .venv/.installed ]; then
  echo "setup: creating .venv" >&2
  python3 -m venv .venv
  if ! .venv/bin/pip install -q --disable-pip-version-check -c requirements.lock \
    -e '.[matrix,slack,test]' >.venv/pip.log 2>&1; then
    cat .venv/pip.log >&2
    exit 1
  fi
  touch .venv/.installed
fi
