"""Confirmations, second approvers, cancelling, rate limits, the audit log and undeploy."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.harness import BotEnv, wait_until

pytestmark = pytest.mark.swarm


@pytest.fixture(scope="module")
def safe(
    workdir: Path, redis_url: str, swarm: docker.DockerClient, run_id: str
) -> Iterator[BotEnv]:
    env = BotEnv(
        workdir,
        redis_url,
        "safety",
        deadline=25,
        extra_roles=f"""
        [roles.ops]
        users = ["console:ops1", "console:ops2"]
        commands = ["deploy", "undeploy", "services", "audit", "restart"]
        stacks = ["{run_id}-safe*"]

        [roles.viewer]
        users = ["console:viewer"]
        commands = ["services"]
        stacks = ["*"]

        [safety]
        second_approver_stacks = ["{run_id}-safe-critical"]
        rate_limit_per_minute = 12
        """,
    )
    env.start_in_process()
    try:
        yield env
    finally:
        env.stop_worker()


def code_in(out: str) -> str:
    return re.search(r"!confirm ([A-Z0-9]{4})", out).group(1)


def test_undeploy_needs_confirmation_and_keeps_volumes(
    safe: BotEnv, swarm: docker.DockerClient, run_id: str
) -> None:
    stack = f"{run_id}-safe-rm"
    safe.add_stack(stack, {"data": {}})
    # A named volume, as the stack would have created it: it must survive the undeploy.
    swarm.volumes.create(f"{stack}_data", labels={"com.docker.stack.namespace": stack})
    assert "converged" in safe.chat(f"!deploy {stack}", user="console:ops1")
    jobs = safe.queued_jobs()
    out = safe.chat(f"!undeploy {stack}", user="console:ops1")
    assert (
        f"this removes stack {stack}: every service and network of it (its volumes are kept" in out
    )
    assert safe.queued_jobs() == jobs, "queued before it was confirmed"
    assert swarm.services.list(filters={"name": f"{stack}_data"})
    code = code_in(out)
    # Someone else's code reads like no code at all: it tells nothing of the command.
    other = safe.chat(f"!confirm {code}", user="console:ops2")
    assert f"no pending command with code {code} that you can confirm" in other, other
    assert "undeploy" not in other and "ops1" not in other
    out = safe.chat(f"!confirm {code}", user="console:ops1")
    assert "confirmed: queued as job" in out, out
    assert f"removed stack {stack}: 1 service\n" in out, out  # one, not "1 services"
    assert f"volumes kept (the bot never deletes data): {stack}_data" in out
    assert not swarm.services.list(filters={"label": f"com.docker.stack.namespace={stack}"})
    assert swarm.volumes.get(f"{stack}_data")
    assert "no pending command with code" in safe.chat(f"!confirm {code}", user="console:ops1")
    swarm.volumes.get(f"{stack}_data").remove()


def test_critical_stack_needs_a_second_approver(safe: BotEnv, run_id: str) -> None:
    stack = f"{run_id}-safe-critical"
    safe.add_stack(stack, {"db": {}})
    assert "converged" in safe.chat(f"!deploy {stack}", user="console:ops1")
    out = safe.chat(f"!undeploy {stack}", user="console:ops1")
    assert "Someone else allowed to undeploy" in out
    code = code_in(out)
    jobs = safe.queued_jobs()
    out = safe.chat(f"!confirm {code}", user="console:ops1")
    assert "now waits for a second approver" in out
    refused = safe.chat(f"!confirm {code}", user="console:viewer")
    assert f"no pending command with code {code} that you can confirm" in refused, refused
    assert safe.queued_jobs() == jobs
    out = safe.chat(f"!confirm {code}", user="console:ops2")
    assert "confirmed: queued as job" in out and "(approved by console:ops2)" in out, out
    assert f"removed stack {stack}" in out


def test_cancel_a_queued_job(safe: BotEnv, run_id: str) -> None:
    stack = f"{run_id}-safe-slow"
    safe.add_stack(stack, {"s": {}})
    safe.stop_worker()  # nothing runs it while it is cancelled (answers only: `ask`)
    try:
        queued = safe.chat_in_background(f"!deploy {stack}", user="console:ops1")
        job = wait_for_job(safe, f"!deploy {stack}", "queued")["id"]
        # Someone else's job reads like no job at all: not who asked, nor what.
        theirs = safe.ask(f"!cancel {job}", user="console:viewer")
        assert f"no job {job} that you can cancel" in theirs, theirs
        assert "ops1" not in theirs and "deploy" not in theirs
        assert "no job 99999999 that you can cancel" in safe.ask(
            "!cancel 99999999", user="console:viewer"
        )
        assert f"cancelled job {job} (!deploy {stack}); it will not run" in safe.ask(
            f"!cancel {job}", user="console:ops1"
        )
    finally:
        safe.start_worker("after-cancel")
    out, _ = queued.communicate(timeout=60)
    assert f"job {job} failed: cancelled by console:ops1 before it started" in out, out
    assert "has already finished (cancelled)" in safe.chat(f"!cancel {job}", user="console:ops1")
    safe.stop_worker()  # in-process again for the next tests


def wait_for_job(env: BotEnv, text: str, state: str) -> dict[str, str]:
    def found() -> dict[str, str] | None:
        job = env.last_job()
        return job if job.get("text") == text and job.get("state") == state else None

    return wait_until(found, 20, f"{text} to be {state}")


def test_user_told_when_no_worker_is_online_and_when_one_takes_the_job(safe: BotEnv) -> None:
    safe.stop_worker()
    r = safe.redis()
    # The worker timeout is 4 s in the tests; wait_until fails the test if it never goes.
    wait_until(
        lambda: not r.zcount(f"{safe.prefix}:workers", time.time() - 4, "+inf"),
        10,
        "the worker to go stale",
    )
    chat = safe.chat_in_background("!services", user="console:viewer")
    job = wait_for_job(safe, "!services", "queued")
    wait_until(lambda: time.time() - float(job["created"]) > 1.5, 5, "the job to have waited")
    safe.start_worker("came-back")
    out, _ = chat.communicate(timeout=60)
    assert "no worker is online right now: it runs when one comes back" in out, out
    # The answer tells that a worker took it; a "taken after Ns" note is sent only with a
    # job's first progress line, and this one answered at once.
    assert "services" in out.splitlines()[-1] or "SERVICE" in out
    assert f"a worker took job {job['id']} after" not in out, out
    assert safe.redis().hget(f"{safe.prefix}:job:{job['id']}", "worker") == "came-back"
    safe.stop_worker()  # in-process again for the next tests


def test_rate_limit(safe: BotEnv) -> None:
    out = safe.chat(*["!whoami"] * 14, user="console:chatty")
    assert out.count("you are console:chatty") == 12
    assert "slow down: at most 12 commands a minute; try again in" in out


def test_audit_shows_decisions_and_outcomes(safe: BotEnv, run_id: str) -> None:
    safe.chat(f"!deploy {run_id}-elsewhere", user="console:ops1")  # refused: outside the role
    out = safe.chat(f"!audit {run_id}-safe-rm", user="console:ops1")
    assert re.search(rf"console:ops1\s+!undeploy {run_id}-safe-rm\s+confirmation-asked", out), out
    assert re.search(rf"!undeploy {run_id}-safe-rm\s+confirmed by console:ops1", out), out
    assert re.search(
        rf"!undeploy {run_id}-safe-rm\s+succeeded\s+\d+\s+{run_id}-safe-rm: removed", out
    ), out
    out = safe.chat("!audit 1h", user="console:ops1")
    assert re.search(rf"⚠ .*!deploy {run_id}-elsewhere\s+refused", out), out
    assert "refused: your roles (viewer) do not include the command `audit`" in safe.chat(
        "!audit", user="console:viewer"
    )
