#!/usr/bin/env bash
# `make test`: set up what is missing, lint, then the whole suite against real components
# (the harness starts its own Redis, Synapse and Slack fake, and dockerd with a one-node
# swarm if none is running).
#
# With no arguments, the suite runs in two phases: first every test but the container ones,
# spread over TEST_WORKERS processes (pytest-xdist, a module per process: most of a test's
# time is spent waiting for the swarm to converge, not computing), on one dockerd started
# here if none answers (tests that stop, crash or restart a dockerd do it on swarms of
# their own, scripts/test-cluster.sh); then, alone, the container tests (swarmbot's own
# stack on the host network, which must not meet other tests' ports and stacks). With
# arguments, plain pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/lint.sh
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi

run=.test-run
mkdir -p "$run"
rm -f "$run/dockerd.pid"
bash scripts/local-swarm.sh "$run" 127.0.0.1:5999/swarmbot-test/busybox:1
stop_ours() {
  # Only a dockerd this script started (the user's own, say from `make run`, stays).
  if [ -s "$run/dockerd.pid" ]; then
    pid=$(cat "$run/dockerd.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    rm -f "$run/dockerd.pid"
  fi
}
trap stop_ours EXIT

log="$run/pytest.log"
: >"$log"
status=0
.venv/bin/python -m pytest -n "${TEST_WORKERS:-5}" --dist loadfile --no-loadscope-reorder --durations=12 \
  -m "not container" \
  | tee -a "$log" || status=$?
stop_ours
.venv/bin/python -m pytest -m container | tee -a "$log" \
  || { rc=$?; [ "$status" -ne 0 ] || status=$rc; }

# One closing line for the two phases together.
count() { grep -E '^=+ .* in [0-9.]+s' "$log" | grep -oE "[0-9]+ $1" | awk '{n += $1} END {print n + 0}'; }
echo "suite: $(count passed) passed, $(( $(count failed) + $(count error) )) failed, $(count skipped) skipped"
exit "$status"
