"""Session-wide real components: one Redis, one local swarm, one configured bot + worker.

Test stacks are named ``<RUN>-<what>`` so that a run only ever touches its own stacks, and
all of them are removed at the end (volumes are never created by test stacks).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.harness import BotEnv, local_swarm, redis_server, remove_stacks, wait_until
from tests.synapse import Synapse

# One test run may be several pytest processes (pytest-xdist workers): they share the
# run's id, so a run clears what killed runs left behind without touching its own stacks.
RUN_ROOT = "sbt" + (os.environ.get("PYTEST_XDIST_TESTRUNUID") or secrets.token_hex(8))[:4]
RUN = f"{RUN_ROOT}{secrets.token_hex(2)}"


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("swarmbot")


@pytest.fixture(scope="session")
def redis_url(workdir: Path) -> Iterator[str]:
    with redis_server(workdir / "redis") as url:
        yield url


@pytest.fixture(scope="session")
def swarm(workdir: Path) -> Iterator[docker.DockerClient]:
    with local_swarm(workdir / "docker") as client:
        # Test stacks a killed run left behind would make short service names ambiguous.
        remove_stacks(client, "sbt", keep=RUN_ROOT)
        wait_until(
            lambda: (
                not [
                    s
                    for s in client.services.list()
                    if s.name.startswith("sbt") and not s.name.startswith(RUN_ROOT)
                ]
            ),
            60,
            "old test stacks to go",
        )
        try:
            yield client
        finally:
            remove_stacks(client, RUN)


@pytest.fixture(scope="session")
def run_id() -> str:
    return RUN


@pytest.fixture(scope="session")
def synapse(workdir: Path) -> Iterator[Synapse]:
    """One real Synapse homeserver for every Matrix test, started on first use; each
    module registers users of its own."""
    server = Synapse(workdir / "synapse")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def bot(workdir: Path, redis_url: str, swarm: docker.DockerClient) -> Iterator[BotEnv]:
    """The shared bot: admin (everything), dev (dev-ish stacks), viewer (read-only)."""
    env = BotEnv(
        workdir,
        redis_url,
        "main",
        deadline=25,
        extra_roles=f"""
        [roles.developer]
        users = ["console:dev"]
        commands = ["services", "ps", "restart", "deploy", "stacks", "jobs"]
        stacks = ["{RUN}-app*"]

        [roles.viewer]
        users = ["console:viewer"]
        commands = ["services", "stacks", "ps"]
        stacks = ["*"]
        """,
    )
    env.start_in_process()
    try:
        yield env
    finally:
        env.stop_worker()


# The modules that take longest (a multi-node swarm of their own, a benchmark run), first:
# `make test` spreads whole modules over its processes in the order collected (xdist's own
# reordering, by number of tests, is off: it put the one-test benchmark last, alone), and
# one of these started last would run alone at the end.
SLOWEST_FIRST = (
    "test_manager_loss.py",
    "test_bench_smoke.py",
    "test_nodes.py",
    "test_install_cluster.py",
    "test_git_sources.py",
    "test_faults.py",
    "test_failover.py",
    "test_swarms.py",
    "test_hardening.py",
    "test_swarm_commands.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return SLOWEST_FIRST.index(name) if name in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)  # stable: each module's own order is kept
