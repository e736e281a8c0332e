"""/healthz and /metrics of the worker and the bot, against real Redis, Docker and Slack fake."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests

from tests.harness import SWARMBOT, BotEnv, RedisServer, free_port, wait_until
from tests.slack_fake import FakeSlack, bot_config, running_fake, wait_for_reply

pytestmark = pytest.mark.swarm


@pytest.fixture(scope="module")
def watched(
    workdir: Path, swarm: docker.DockerClient
) -> Iterator[tuple[BotEnv, RedisServer, FakeSlack, int, int]]:
    server = RedisServer(workdir / "health-redis")
    server.start()
    with running_fake() as fake:
        bot_port, worker_port = free_port(), free_port()
        env = BotEnv(
            workdir,
            server.url,
            "health",
            adapters=("slack",),
            extra_roles=bot_config(fake)
            + f"""
[health]
bot_port = {bot_port}
worker_port = {worker_port}
""",
        )
        # Where each process tells `swarmbot healthcheck` its /healthz (a container's /tmp).
        run_dir = {"SWARMBOT_RUN_DIR": str(env.root)}
        env.start_worker(env=run_dir)
        env.start_bot(env=run_dir)
        try:
            yield env, server, fake, bot_port, worker_port
        finally:
            env.stop_bot()
            env.stop_worker()
            server.stop()


def get(port: int, path: str) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{port}{path}", timeout=5)


def test_healthy_and_counting(watched: tuple[BotEnv, RedisServer, FakeSlack, int, int]) -> None:
    _env, _server, fake, bot_port, worker_port = watched
    health = get(worker_port, "/healthz").json()
    assert health["ok"] is True and health["problems"] == {}, health
    assert health["serves"]["manager"] is True, health  # and which daemon, node, swarm
    wait_until(lambda: get(bot_port, "/healthz").json()["ok"], 15, "the bot to be healthy")
    ts = fake.say("C0OPS0001", "UALICE001", "!ping")
    wait_for_reply(fake, "C0OPS0001", ts, "pong")
    refused = fake.say("C0OPS0001", "UNOBODY01", "!ping")
    wait_for_reply(fake, "C0OPS0001", refused, "refused")
    bot = get(bot_port, "/metrics").text
    assert 'swarmbot_commands_total{command="ping",outcome="queued"} 1.0' in bot
    assert 'swarmbot_refusals_total{reason="no-role"} 1.0' in bot
    assert "swarmbot_worker_heartbeat_age_seconds" in bot
    assert 'swarmbot_queue_depth{swarm=""} 0.0' in bot
    wait_until(
        lambda: "swarmbot_jobs_total{" in get(worker_port, "/metrics").text, 10, "the job counted"
    )
    worker = get(worker_port, "/metrics").text
    assert 'swarmbot_jobs_total{op="ping",state="succeeded"} 1.0' in worker
    assert 'swarmbot_job_duration_seconds_count{op="ping"} 1.0' in worker


def healthcheck(run_dir: Path) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, run beside the processes as in their container."""
    return subprocess.run(
        [*SWARMBOT, "healthcheck"],
        env={**os.environ, "SWARMBOT_RUN_DIR": str(run_dir)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_redis_down_is_unhealthy(watched: tuple[BotEnv, RedisServer, FakeSlack, int, int]) -> None:
    env, server, _fake, bot_port, worker_port = watched
    wait_until(lambda: get(bot_port, "/healthz").json()["ok"], 15, "the bot to be healthy")
    fine = healthcheck(env.root)
    assert fine.returncode == 0 and fine.stdout == "bot: healthy\nworker: healthy\n", fine
    server.stop()
    try:
        for port in (bot_port, worker_port):
            resp = get(port, "/healthz")
            assert resp.status_code == 503 and resp.json()["problems"]["redis"], resp.text
        sick = healthcheck(env.root)
        assert sick.returncode == 1, sick
        assert "bot: unhealthy: redis: " in sick.stdout, sick.stdout
        assert "worker: unhealthy: redis: " in sick.stdout, sick.stdout
    finally:
        server.start()
    wait_until(lambda: get(worker_port, "/healthz").status_code == 200, 15, "health back")


def test_healthcheck_without_a_running_process_fails(tmp_path: Path) -> None:
    proc = healthcheck(tmp_path)
    assert proc.returncode == 1 and "no swarmbot /healthz advertised" in proc.stdout, proc


def test_a_worker_without_redis_says_why_from_its_first_second(
    workdir: Path, swarm: docker.DockerClient
) -> None:
    """Redis is not up yet: the worker answers /healthz at once, 503 with the reason, and
    is healthy as soon as Redis answers."""
    server = RedisServer(workdir / "late-redis")  # not started yet
    port = free_port()
    env = BotEnv(
        workdir, server.url, "health-late", extra_roles=f"[health]\nworker_port = {port}\n"
    )

    def answer() -> list[requests.Response]:  # a 503 Response is falsy itself
        try:
            return [get(port, "/healthz")]
        except requests.ConnectionError:
            return []

    worker = subprocess.Popen(
        [*SWARMBOT, "worker", "--config", str(env.config)],
        env={**env.env(), "SWARMBOT_RUN_DIR": str(env.root)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        resp = wait_until(answer, 15, "the worker's /healthz")[0]
        assert resp.status_code == 503, resp.text
        problems = resp.json()["problems"]
        assert problems["worker"] == "starting: not taking jobs yet (waiting for Redis)"
        assert "redis" in problems and "docker" not in problems, problems
        sick = healthcheck(env.root)
        assert sick.returncode == 1 and "worker: unhealthy: redis: " in sick.stdout, sick
        server.start()
        wait_until(lambda: get(port, "/healthz").status_code == 200, 30, "the worker healthy")
    finally:
        worker.terminate()
        worker.wait(30)
        server.stop()
