"""The worker knows which swarm it manages: it says so (`!ping`, `/healthz`), and one whose
daemon is in another swarm than the one it served takes no jobs until an admin accepts the
new swarm (`!swarm accept`, confirmed)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests

from bot.core.config import Secret
from bot.core.sealed import seal
from tests.harness import BotEnv, free_port, wait_until

pytestmark = pytest.mark.swarm

ELSEWHERE = "z" * 25  # a swarm this test's daemon is not in


@pytest.fixture(scope="module")
def env(workdir: Path, redis_url: str) -> Iterator[BotEnv]:
    port = free_port()
    env = BotEnv(workdir, redis_url, "identity", extra_roles=f"[health]\nworker_port = {port}\n")
    env.health_port = port  # type: ignore[attr-defined]
    try:
        yield env
    finally:
        env.stop_worker()


def healthz(env: BotEnv) -> tuple[int, dict]:
    resp = requests.get(f"http://127.0.0.1:{env.health_port}/healthz", timeout=5)  # type: ignore[attr-defined]
    return resp.status_code, resp.json()


def other_swarm_told(env: BotEnv) -> dict | None:
    """/healthz's answer once it is 503 for the swarm (None before the worker serves it)."""
    try:
        status, body = healthz(env)
    except requests.exceptions.ConnectionError:
        return None
    return body if status == 503 and "swarm" in body["problems"] else None


def test_ping_and_healthz_say_daemon_node_and_swarm(
    env: BotEnv, swarm: docker.DockerClient
) -> None:
    info = swarm.info()
    cluster, host = info["Swarm"]["Cluster"]["ID"], info["Name"]
    env.start_worker("identity-1")
    out = env.chat("!ping")
    assert f"pong from worker identity-1: swarm {cluster[:12]}, node {host} (manager)" in out, out
    assert "daemon unix://" in out, out
    status, body = healthz(env)
    assert status == 200, body
    assert body["serves"]["swarm_id"] == cluster
    assert body["serves"]["hostname"] == host
    env.stop_worker()


def test_a_worker_on_another_swarm_takes_no_jobs_until_it_is_accepted(
    env: BotEnv, swarm: docker.DockerClient
) -> None:
    cluster = swarm.info()["Swarm"]["Cluster"]["ID"]
    # As if this swarmbot had served another swarm until now (the socket was remounted).
    key = f"{env.prefix}:swarm:accepted"
    record = {"id": ELSEWHERE, "by": "test", "at": time.time()}
    env.redis().set(key, seal(Secret(env.secret.encode()), key, record))
    env.start_worker("identity-2", wait=False)  # never ready: /healthz says why
    body = wait_until(lambda: other_swarm_told(env), 20, "/healthz to name the other swarm")
    problem = body["problems"]["swarm"]
    assert f"serves swarm {ELSEWHERE}" in problem and f"is in swarm {cluster}" in problem, body
    waiting = env.chat_in_background("!ping")  # queued; nobody takes it while this lasts
    shown = env.ask("!swarm")
    assert re.search(rf"identity-2\s+unix://\S+\s+\S+ \(manager\)\s+{cluster}\s+NO", shown), shown
    asked = env.ask(f"!swarm accept {cluster}")
    assert f"this points every worker at swarm {cluster}" in asked, asked
    assert waiting.poll() is None, "a job was taken on the wrong swarm"
    code = re.search(r"!confirm ([A-Z0-9]{4})", asked)
    assert code, asked
    assert f"confirmed: swarm {cluster} accepted" in env.ask(f"!confirm {code.group(1)}")
    out, _ = waiting.communicate(timeout=60)
    assert "pong from worker identity-2" in out, out
    assert healthz(env)[0] == 200
    audit = env.ask("!audit 1h")
    assert re.search(r"!swarm accept \w+\s+confirmed by console:admin", audit), audit


def test_accepting_a_swarm_no_worker_reaches_is_refused(env: BotEnv) -> None:
    out = env.ask(f"!swarm accept {'q' * 25}")
    code = re.search(r"!confirm ([A-Z0-9]{4})", out)
    assert code, out
    refused = env.ask(f"!confirm {code.group(1)}")
    assert f"no worker reaches swarm {'q' * 25}" in refused, refused
