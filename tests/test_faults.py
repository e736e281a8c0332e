"""Faults: a worker killed mid-job, Redis restarted mid-job, the bot killed between queueing
and answering. Each asserts that nothing is lost, nothing that matters runs twice, and
every command gets exactly one answer. (dockerd stopped mid-job: tests/test_docker_restarts.py,
on a swarm of the tests' own; a manager lost: tests/test_manager_loss.py.)

Each fault runs ``FAULT_TRIALS`` times (2 in `make test`; `make faults` runs 20).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.harness import BotEnv, RedisServer, wait_until
from tests.slack_fake import FakeSlack, bot_config, running_fake, wait_for_reply

pytestmark = pytest.mark.faults

TRIALS = range(int(os.environ.get("FAULT_TRIALS", "2")))
SLOW = {"update_config": {"monitor": "3s"}}


def force_count(swarm: docker.DockerClient, name: str) -> int:
    return swarm.services.get(name).attrs["Spec"]["TaskTemplate"].get("ForceUpdate", 0)


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"console exited {proc.returncode}\n{out}\n{err}"
    return out


def mid_job(env: BotEnv, text: str, step: str, after: str) -> dict[str, str]:
    """Wait until a job newer than ``after`` for ``text`` has applied its change and is
    watching it converge."""

    def under_way() -> dict[str, str] | None:
        job = env.last_job()
        fresh = job.get("text") == text and int(job.get("id", 0)) > int(after or 0)
        return job if fresh and f"applied:{step}" in job else None

    return wait_until(under_way, 30, f"{text} to be under way", interval=0.02)


@pytest.fixture(scope="module")
def fault_env(
    workdir: Path, redis_url: str, swarm: docker.DockerClient, run_id: str
) -> Iterator[BotEnv]:
    env = BotEnv(workdir, redis_url, "faults", deadline=40)
    env.add_stack(f"{run_id}-fault", {"victim": {"replicas": 2, **SLOW}})
    env.start_worker("fault-setup")
    assert "converged" in env.chat(f"!deploy {run_id}-fault")
    env.stop_worker()
    yield env
    env.stop_worker()


@pytest.mark.parametrize("trial", TRIALS)
def test_worker_killed_mid_restart_is_taken_over_and_restarts_once(
    fault_env: BotEnv, swarm: docker.DockerClient, run_id: str, trial: int
) -> None:
    service = f"{run_id}-fault_victim"
    before = force_count(swarm, service)
    fault_env.start_worker(f"doomed-{trial}")
    after = fault_env.last_job().get("id", "0")
    chat = fault_env.chat_in_background(f"!restart {service}")
    mid_job(fault_env, f"!restart {service}", "restart", after)
    fault_env.kill_worker()
    fault_env.start_worker(f"rescuer-{trial}")
    out = finish(chat)
    fault_env.stop_worker()
    assert len(re.findall(rf"\] restarted {service}: 2/2 running", out)) == 1, out
    assert force_count(swarm, service) == before + 1, "the restart was applied twice (or never)"


@pytest.mark.parametrize("trial", TRIALS)
def test_worker_killed_mid_deploy_is_taken_over_and_answered_once(
    fault_env: BotEnv, swarm: docker.DockerClient, run_id: str, trial: int
) -> None:
    stack = f"{run_id}-fault"
    fault_env.add_stack(
        stack, {"victim": {"replicas": 2, "environment": {"TRIAL": f"k{trial}"}, **SLOW}}
    )
    fault_env.start_worker(f"doomed-deploy-{trial}")
    after = fault_env.last_job().get("id", "0")
    chat = fault_env.chat_in_background(f"!deploy {stack}")
    mid_job(fault_env, f"!deploy {stack}", f"deploy:{stack}", after)
    fault_env.kill_worker()
    fault_env.start_worker(f"rescuer-deploy-{trial}")
    out = finish(chat)
    fault_env.stop_worker()
    assert len(re.findall(rf"\] deployed {stack}: 1 service converged", out)) == 1, out
    env = swarm.services.get(f"{stack}_victim").attrs["Spec"]["TaskTemplate"]["ContainerSpec"][
        "Env"
    ]
    assert f"TRIAL=k{trial}" in env


@pytest.fixture(scope="module")
def handover_env(
    workdir: Path, redis_url: str, swarm: docker.DockerClient, run_id: str
) -> Iterator[BotEnv]:
    """Workers taken for dead only after 300 s: a job can move on sooner only by hand-over."""
    env = BotEnv(workdir, redis_url, "handover", deadline=40, worker_timeout=300)
    yield env
    env.stop_worker()


@pytest.mark.parametrize("trial", TRIALS)
def test_a_scheduled_deploy_runs_once_across_a_worker_handover(
    handover_env: BotEnv, swarm: docker.DockerClient, run_id: str, trial: int
) -> None:
    """`!deploy S in 6s`, and the worker that was there when it was scheduled is replaced
    before it is due (SIGTERM, a new worker): the deploy runs once, when it is due, and is
    answered once in the console that asked."""
    env = handover_env
    stack = env.add_stack(
        f"{run_id}-sched", {"web": {"environment": {"TRIAL": f"t{trial}-{os.getpid()}"}}}
    )
    env.start_worker(f"sched-first-{trial}")
    after = env.last_job().get("id", "0")
    asked = env.chat_in_background(f"!deploy {stack} in 6s")
    r = env.redis()

    def scheduled() -> dict[str, str] | None:
        for job_id in r.zrevrange(f"{env.prefix}:recent", 0, 4):
            job = r.hgetall(f"{env.prefix}:job:{job_id}")
            if int(job_id) > int(after) and job.get("state") == "scheduled":
                return job
        return None

    job = wait_until(scheduled, 30, "the deploy to be scheduled")
    assert env.worker is not None
    env.worker.terminate()
    assert env.worker.wait(15) == 0
    env.worker = None
    env.start_worker(f"sched-second-{trial}")
    out = finish(asked)
    env.stop_worker()
    assert len(re.findall(rf"\] deployed {stack}", out)) == 1, out
    assert f"scheduled as job {job['id']} for" in out, out
    record = r.hgetall(f"{env.prefix}:job:{job['id']}")
    assert record["state"] == "succeeded", record
    assert (
        float(record.get("started", 0) or record.get("finished", 0))
        >= float(record["not_before"]) - 1
    ), record
    audit = [
        fields
        for _, fields in r.xrange(f"{env.prefix}:audit")
        if fields.get("job") == job["id"] and fields.get("decision") == "succeeded"
    ]
    assert len(audit) == 1, audit


@pytest.mark.parametrize("trial", TRIALS)
def test_worker_stopped_mid_deploy_hands_the_job_over_at_once(
    handover_env: BotEnv, swarm: docker.DockerClient, run_id: str, trial: int
) -> None:
    """SIGTERM (swarm replacing the worker, e.g. `!deploy swarmbot`): the worker leaves the
    deploy it is watching to the next worker, which takes it over without waiting out the
    heartbeat timeout, and the deploy is answered once."""
    env = handover_env
    stack = env.add_stack(
        f"{run_id}-handover",
        {"victim": {"replicas": 2, "environment": {"TRIAL": f"t{trial}"}, **SLOW}},
    )
    env.start_worker(f"replaced-{trial}")
    after = env.last_job().get("id", "0")
    chat = env.chat_in_background(f"!deploy {stack}")
    job = mid_job(env, f"!deploy {stack}", f"deploy:{stack}", after)
    mark = env.worker_log.stat().st_size
    assert env.worker is not None
    env.worker.terminate()
    assert env.worker.wait(15) == 0  # it exits cleanly, without the deploy's answer
    env.worker = None
    stopped = env.worker_log.read_text()[mark:]
    assert f"[job {job['id']}]: left unanswered for the next worker" in stopped, stopped
    env.start_worker(f"successor-{trial}")
    out = finish(chat)  # the console waits 100 s: far less than the 300 s heartbeat timeout
    env.stop_worker()
    assert len(re.findall(rf"\] deployed {stack}: 1 service converged", out)) == 1, out
    taken = env.worker_log.read_text()[mark:]
    assert "from a worker that stopped" in taken and "was already applied" in taken, taken


@pytest.mark.parametrize("trial", TRIALS)
def test_handover_with_a_job_waiting_on_the_stack_runs_each_job_once(
    handover_env: BotEnv, swarm: docker.DockerClient, run_id: str, trial: int
) -> None:
    """Two restarts of one slow service, the second waiting for the stack; SIGTERM, and a
    new worker takes both over. Its takeover and its own pending list both hold the
    entries: each must run, and be answered, exactly once."""
    env = handover_env
    stack = env.add_stack(f"{run_id}-twice", {"victim": {"replicas": 2, **SLOW}})
    service = f"{stack}_victim"
    if not swarm.services.list(filters={"name": service}):
        env.start_worker(f"twice-setup-{trial}")
        assert "] deployed" in env.chat(f"!deploy {stack}")
        env.stop_worker()
    before = force_count(swarm, service)
    env.start_worker(f"twice-replaced-{trial}")
    after = env.last_job().get("id", "0")
    first = env.chat_in_background(f"!restart {service}")
    job = mid_job(env, f"!restart {service}", "restart", after)
    second = env.chat_in_background(f"!restart {service}")
    r = env.redis()
    wait_until(
        lambda: r.hget(f"{env.prefix}:job:{int(job['id']) + 1}", "state") == "waiting",
        30,
        "the second restart to wait for the stack",
    )
    assert env.worker is not None
    env.worker.terminate()
    assert env.worker.wait(15) == 0
    env.worker = None
    env.start_worker(f"twice-successor-{trial}")
    outs = [finish(first), finish(second)]
    env.stop_worker()
    for out in outs:
        answers = re.findall(rf"\] restarted {service}: 2/2 running", out)
        assert len(answers) == 1, out
    assert force_count(swarm, service) == before + 2, "a restart ran twice (or never)"


@pytest.fixture(scope="module")
def durable(
    workdir: Path, swarm: docker.DockerClient, run_id: str
) -> Iterator[tuple[BotEnv, RedisServer]]:
    server = RedisServer(workdir / "durable-redis", durable=True)
    server.start()
    env = BotEnv(workdir, server.url, "durable", deadline=40)
    env.add_stack(f"{run_id}-durable", {"svc": SLOW})
    env.start_worker()
    try:
        yield env, server
    finally:
        env.stop_worker()
        server.stop()


@pytest.mark.parametrize("trial", TRIALS)
def test_redis_restarted_mid_job_loses_nothing(
    durable: tuple[BotEnv, RedisServer], run_id: str, trial: int
) -> None:
    env, server = durable
    stack = f"{run_id}-durable"
    env.add_stack(stack, {"svc": {"environment": {"TRIAL": f"r{trial}"}, **SLOW}})
    after = env.last_job().get("id", "0")
    chat = env.chat_in_background(f"!deploy {stack}")
    mid_job(env, f"!deploy {stack}", f"deploy:{stack}", after)
    server.stop()
    refused = env.chat("!services")  # a command while Redis is down: said so, not dropped
    assert "queue unavailable, not queued" in refused, refused
    server.start()
    out = finish(chat)
    assert len(re.findall(rf"\] deployed {stack}: 1 service converged", out)) == 1, out
    assert env.last_job()["state"] == "succeeded"


@pytest.fixture(scope="module")
def slack_env(
    workdir: Path, redis_url: str, swarm: docker.DockerClient, run_id: str
) -> Iterator[tuple[BotEnv, FakeSlack]]:
    with running_fake() as fake:
        env = BotEnv(
            workdir,
            redis_url,
            "slack-faults",
            deadline=40,
            adapters=("slack",),
            extra_roles=bot_config(fake),
        )
        env.start_worker()
        env.start_bot()
        try:
            yield env, fake
        finally:
            env.stop_bot()
            env.stop_worker()


@pytest.mark.parametrize("trial", TRIALS)
def test_bot_killed_between_queueing_and_answering_answers_once(
    slack_env: tuple[BotEnv, FakeSlack], run_id: str, trial: int
) -> None:
    env, fake = slack_env
    stack = env.add_stack(
        f"{run_id}-botkill", {"svc": {"environment": {"TRIAL": f"b{trial}"}, **SLOW}}
    )
    ts = fake.say("C0OPS0001", "UALICE001", f"!deploy {stack}")
    # The bot has said something in the thread ("queued as job N", or the first progress
    # line if it came within the second): the job is queued and under way.
    wait_until(lambda: fake.thread("C0OPS0001", ts), 60, "the first reply in the thread")
    job = env.last_job()["id"]
    assert env.last_job()["text"] == f"!deploy {stack}"
    env.stop_bot(kill=True)
    assert not [m for m in fake.thread("C0OPS0001", ts) if "deployed" in m["text"]], (
        "answered too soon"
    )
    record = f"{env.prefix}:job:{job}"
    wait_until(lambda: env.redis().hget(record, "state") == "succeeded", 60, "the job to finish")
    env.start_bot()
    wait_for_reply(fake, "C0OPS0001", ts, f"deployed {stack}")
    wait_until(lambda: "white_check_mark" in fake.reactions_on("C0OPS0001", ts), 15, "✅")
    finals = [m for m in fake.thread("C0OPS0001", ts) if f"deployed {stack}" in m["text"]]
    assert len(finals) == 1, [m["text"] for m in fake.thread("C0OPS0001", ts)]
