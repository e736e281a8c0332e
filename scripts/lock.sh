#!/usr/bin/env bash
# `make lock`: renew requirements.lock, the exact versions `make run`, `make test` and the
# image install. Resolves the newest versions pyproject.toml allows, in a fresh virtual
# environment, and writes them all down; commit the result after `make test` passes.
# Without it two installs a month apart could differ (redis-py 8 changed its default
# socket timeout under us once).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --disable-pip-version-check '.[matrix,slack,test]'
{
  echo "# The exact versions swarmbot is tested with: \`make lock\` renews this file."
  echo "# Used as pip constraints (-c) by scripts/setup.sh, the Dockerfile and scripts/build-image.sh."
  "$tmp/venv/bin/pip" freeze --disable-pip-version-check --exclude-editable \
    | grep -v -i '^swarmbot[= @]'
} >requirements.lock
echo "lock: $(grep -c '==' requirements.lock) packages pinned in requirements.lock" >&2
