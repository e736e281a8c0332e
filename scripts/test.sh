#!/usr/bin/env bash
# `make test`: set up what is missing, lint, then the whole suite against real components
# (the harness starts its own Redis, and dockerd with a one-node swarm if none is running).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/lint.sh
exec .venv/bin/python -m pytest "$@"
