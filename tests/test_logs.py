"""`--log-format json`: one JSON object per line, and every line about a job carries its id."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest

from tests.harness import BotEnv

pytestmark = pytest.mark.swarm


def test_json_logs_carry_the_job_id(
    workdir: Path, redis_url: str, swarm: docker.DockerClient
) -> None:
    env = BotEnv(workdir, redis_url, "jsonlogs")
    env.start_worker(env={"SWARMBOT_LOG_FORMAT": "json"})
    try:
        out = env.chat("!ping", "!restart no-such-service")
    finally:
        env.stop_worker()
    assert "pong" in out and "no service `no-such-service`" in out, out
    lines = [json.loads(line) for line in env.worker_log.read_text().splitlines() if line]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    ping, restart = (env.redis().hgetall(f"{env.prefix}:job:{i}") for i in ("1", "2"))
    assert ping["text"] == "!ping" and restart["text"] == "!restart no-such-service"
    for job in ("1", "2"):
        about = [line for line in lines if line.get("job") == job]
        messages = " | ".join(line["message"] for line in about)
        assert any(line.get("audit", {}).get("job") == job for line in about), messages
        assert any(line["message"].startswith(("succeeded in", "failed in")) for line in about), (
            messages
        )
    # Lines that are not about a job carry no id.
    assert any("job" not in line and "ready" in line["message"] for line in lines)
