#!/usr/bin/env bash
# `make stop`: stop the Redis and dockerd that `make run` started (the demo stack stays
# defined in the swarm and comes back with dockerd).
set -uo pipefail
cd "$(dirname "$0")/.."
for name in redis dockerd; do
  pid_file=.run/$name.pid
  if [ -s "$pid_file" ] && kill "$(cat "$pid_file")" 2>/dev/null; then
    echo "stopped $name"
  fi
  rm -f "$pid_file"
done
