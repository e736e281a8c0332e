"""Docker itself stopping and restarting under the bot, on a one-node swarm of the tests'
own (tests/cluster.py), never the user's dockerd: these always run, `make run` or not.

- dockerd stopped mid-job: the job fails fast with "Docker is not reachable" and the worker
  carries on, answering again once Docker is back;
- dockerd restarted: a change made right after is told exactly once, and the deploy before
  it is not told again (the watcher compares state, not just the event stream)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import Cluster, ClusterBot, cluster_bot
from tests.harness import wait_until
from tests.slack_fake import wait_for_reply

pytestmark = pytest.mark.swarm

OPS, ALICE = "C0OPS0001", "UALICE001"
SLOW = {"update_config": {"monitor": "3s"}}


@pytest.fixture(scope="module")
def lone(run_id: str, workdir: Path, redis_url: str) -> Iterator[ClusterBot]:
    cluster = Cluster(f"{run_id}-lone", workers=0, managers=1)
    cluster.start()
    try:
        with cluster_bot(cluster, workdir, redis_url, "docker-restarts", deadline=40) as env:
            yield env
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def image(lone: ClusterBot) -> str:
    return lone.cluster.push_test_image()


def test_dockerd_stopped_mid_job_fails_fast_and_the_worker_carries_on(
    lone: ClusterBot, image: str, run_id: str
) -> None:
    stack = lone.add_stack(
        f"{run_id}-dockerdown", {"victim": {"image": image, "replicas": 2, **SLOW}}
    )
    after = lone.last_job().get("id", "0")
    chat = lone.chat_in_background(f"!deploy {stack}")

    def under_way() -> bool:
        job = lone.last_job()
        fresh = int(job.get("id", 0)) > int(after or 0)
        return fresh and f"applied:deploy:{stack}" in job

    wait_until(under_way, 60, "the deploy to be under way", interval=0.02)
    lone.cluster.stop_node("manager1")
    try:
        out, err = chat.communicate(timeout=90)
        assert "Docker is not reachable" in out, out + err
    finally:
        lone.cluster.start_node("manager1")
    assert lone.worker is not None and lone.worker.poll() is None, "the worker died"
    out = lone.chat(f"!services {stack}")
    assert f"{stack}_victim" in out, out


def test_no_notice_lost_or_doubled_across_a_dockerd_restart(
    lone: ClusterBot, image: str, run_id: str
) -> None:
    stack = lone.add_stack(f"{run_id}-restart", {"svc": {"image": image}})
    ts = lone.fake.say(OPS, ALICE, f"!deploy {stack}")
    wait_for_reply(lone.fake, OPS, ts, f"deployed {stack}")
    lone.settle()
    told = len(lone.notices(f"{stack} deployed by"))
    lone.cluster.stop_node("manager1")
    lone.cluster.start_node("manager1")
    # Right after the restart, whether or not the watcher's event stream is back yet.
    wait_until(lambda: _scale(lone, f"{stack}_svc", 3), 60, "a scale after the restart")
    notice = wait_until(
        lambda: lone.notices(f"{stack}: changed outside the bot"), 60, "the notice"
    )[0]
    assert "replicas 1 -> 3" in notice, notice
    lone.settle()
    # Stopping dockerd stops the task, so "unhealthy" notices are right here; what must hold
    # is that the change is told exactly once and the deploy is not told again.
    assert len(lone.notices(f"{stack}: changed outside the bot")) == 1, lone.notices(stack)
    assert len(lone.notices(f"{stack} deployed by")) == told, lone.notices(stack)


def _scale(lone: ClusterBot, service: str, replicas: int) -> bool:
    import docker.errors

    try:
        lone.cluster.client().services.get(service).scale(replicas)
    except docker.errors.APIError:
        return False  # the manager is not ready to take updates yet
    return True
