"""The worker trusts nothing it reads from Redis: forged, altered, replayed, expired jobs."""

from __future__ import annotations

import json
import time

import docker
import pytest

from bot.core.config import Secret
from bot.core.wire import Job, decode_result, encode_job
from commands import REGISTRY
from tests.harness import BotEnv, wait_until

pytestmark = pytest.mark.swarm


@pytest.fixture(scope="module")
def target(bot: BotEnv, run_id: str) -> str:
    """A deployed service that forged jobs try to restart."""
    stack = bot.add_stack(f"{run_id}-app-target", {"victim": {}})
    assert "converged" in bot.chat(f"!deploy {stack}")
    return f"{stack}_victim"


def force_count(swarm: docker.DockerClient, service: str) -> int:
    return swarm.services.get(service).attrs["Spec"]["TaskTemplate"].get("ForceUpdate", 0)


def restart_job(service: str, job_id: str = "990001", age: float = 0.0, ttl: float = 60) -> Job:
    now = time.time() - age
    return Job(
        job_id,
        "restart",
        {"service": service},
        "console:admin",
        f"!restart {service}",
        {"inbox": "forgery-test"},
        now,
        now + ttl,
    )


def push_and_wait_rejected(bot: BotEnv, fields: dict[str, str]) -> str:
    """Write an entry straight into the job stream; return the reason the worker gave."""
    r = bot.redis()
    before = r.xlen(f"{bot.prefix}:rejected")
    r.xadd(f"{bot.prefix}:jobs", fields)
    bot.run_queue()
    wait_until(
        lambda: r.xlen(f"{bot.prefix}:rejected") > before, 15, "the worker to refuse the entry"
    )
    return r.xrevrange(f"{bot.prefix}:rejected", count=1)[0][1]["reason"]


def test_unsigned_job_is_refused(bot: BotEnv, target: str, swarm: docker.DockerClient) -> None:
    before = force_count(swarm, target)
    payload = json.dumps(restart_job(target).__dict__)
    assert push_and_wait_rejected(bot, {"job": payload}) == "unsigned or empty entry"
    assert force_count(swarm, target) == before


def test_job_signed_with_another_secret_is_refused(
    bot: BotEnv, target: str, swarm: docker.DockerClient
) -> None:
    before = force_count(swarm, target)
    fields = encode_job(restart_job(target), Secret(b"x" * 40))
    assert push_and_wait_rejected(bot, fields) == "bad signature"
    assert force_count(swarm, target) == before


def test_altered_job_is_refused(
    bot: BotEnv, target: str, swarm: docker.DockerClient, run_id: str
) -> None:
    before = force_count(swarm, target)
    fields = encode_job(restart_job(f"{run_id}-app-target_other"), Secret(bot.secret.encode()))
    fields["job"] = fields["job"].replace(f"{run_id}-app-target_other", target)
    assert push_and_wait_rejected(bot, fields) == "bad signature"
    assert force_count(swarm, target) == before


def test_signed_job_with_unknown_operation_is_refused(bot: BotEnv) -> None:
    job = Job(
        "990002",
        "exec",
        {},
        "console:admin",
        "!exec",
        {"inbox": "x"},
        time.time(),
        time.time() + 60,
    )
    fields = encode_job(job, Secret(bot.secret.encode()))
    assert push_and_wait_rejected(bot, fields) == "unknown operation 'exec'"


def test_signed_job_with_a_path_for_a_stack_is_refused(bot: BotEnv) -> None:
    job = Job(
        "990003",
        "deploy",
        {"stack": "../../etc/passwd"},
        "console:admin",
        "!deploy",
        {"inbox": "x"},
        time.time(),
        time.time() + 60,
    )
    assert (
        push_and_wait_rejected(bot, encode_job(job, Secret(bot.secret.encode())))
        == "bad stack for deploy"
    )


def test_replayed_job_is_refused(bot: BotEnv, target: str, swarm: docker.DockerClient) -> None:
    out = bot.chat(f"!restart {target}")
    assert "restarted" in out
    r = bot.redis()
    original = next(
        f for _id, f in reversed(r.xrange(f"{bot.prefix}:jobs")) if '"restart"' in f.get("job", "")
    )
    before = force_count(swarm, target)
    assert push_and_wait_rejected(bot, original).startswith("replay of job")
    assert force_count(swarm, target) == before


def test_expired_job_is_answered_but_not_run(
    bot: BotEnv, target: str, swarm: docker.DockerClient
) -> None:
    before = force_count(swarm, target)
    r = bot.redis()
    job = restart_job(target, job_id="990004", age=100, ttl=60)
    r.xadd(f"{bot.prefix}:jobs", encode_job(job, Secret(bot.secret.encode())))
    bot.run_queue()
    inbox = f"{bot.prefix}:inbox:forgery-test"
    entries = wait_until(lambda: r.xrange(inbox), 15, "the worker to answer the expired job")
    result = decode_result(entries[-1][1], Secret(bot.secret.encode()), REGISTRY)
    assert result.job == "990004" and not result.ok
    assert "expired after 100s in the queue; nothing was run" in result.data["error"]
    assert force_count(swarm, target) == before
