#!/usr/bin/env bash
# `make run`: set up what is missing, then open the terminal chat against a local one-node
# swarm (dockerd, swarm and Redis are started if they are not running, and left running;
# `make stop` stops what this script started). The worker runs while the chat is open.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

run=$PWD/.run
mkdir -p "$run"
bash scripts/local-swarm.sh "$run" 127.0.0.1:5999/swarmbot-demo/busybox:1

if [ ! -s "$run/signing-secret" ]; then
  (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(48))' >"$run/signing-secret")
fi

if ! redis-cli -p 6390 ping >/dev/null 2>&1; then
  redis-server --port 6390 --bind 127.0.0.1 --dir "$run" --appendonly yes --save '' \
    --daemonize yes --pidfile "$run/redis.pid" --logfile "$run/redis.log"
  for _ in $(seq 1 50); do redis-cli -p 6390 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

log="$run/worker.log"
: >"$log"
.venv/bin/swarmbot worker --config demo/config.toml >>"$log" 2>&1 &
worker=$!
trap 'kill "$worker" 2>/dev/null || true; wait "$worker" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  grep -q ready "$log" && break
  kill -0 "$worker" 2>/dev/null || { echo "the worker did not start:" >&2; cat "$log" >&2; exit 1; }
  sleep 0.1
done

.venv/bin/swarmbot console --config demo/config.toml --user console:admin
