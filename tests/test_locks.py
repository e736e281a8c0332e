"""Stack locks on the real swarm: a lock stops everyone but its holder, said at once when
the bot can tell and by the worker otherwise (a short service name, a job queued before
the lock); an admin breaks it only with --break and a confirmation. (An `auto` change from
git that waits for a lock: tests/test_git_sources.py.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.harness import BotEnv

pytestmark = pytest.mark.swarm
BOB = "console:bob"


@pytest.fixture(scope="module")
def env(workdir: Path, redis_url: str, swarm: docker.DockerClient) -> Iterator[BotEnv]:
    env = BotEnv(
        workdir,
        redis_url,
        "locks",
        deadline=25,
        extra_roles=f"""
        [roles.dev]
        users = ["{BOB}", "console:dan"]
        commands = ["deploy", "restart", "lock", "unlock", "locks", "stacks", "confirm", "jobs"]
        stacks = ["*"]
        """,
    )
    env.start_in_process()
    yield env


def test_a_lock_stops_everyone_but_its_holder(env: BotEnv, run_id: str) -> None:
    stack = env.add_stack(f"{run_id}-lk", {"lockweb": {}})
    assert f"deployed {stack}" in env.chat(f"!deploy {stack}", user=BOB)
    said = env.chat(f"!lock {stack} migrating the database", user=BOB)
    assert f"{stack} locked" in said, said

    # Someone else: refused at once, with who, why and since when; nothing queued.
    before = env.last_job().get("id")
    refused = env.chat(f"!deploy {stack} --force")
    assert re.search(
        rf"refused: {stack} is locked by {BOB} since \d\d:\d\d UTC \(\d+ s ago\): migrating the "
        "database",
        refused,
    ), refused
    assert env.last_job().get("id") == before
    # A short service name is known to be in the stack only in the worker: refused there.
    short = env.chat("!restart lockweb")
    assert f"{stack} is locked by {BOB}" in short and "refused" in short, short
    assert env.last_job()["state"] == "refused"

    # The holder goes on; !locks and !stacks show it.
    assert f"deployed {stack}" in env.chat(f"!deploy {stack} --force", user=BOB)
    assert "migrating the database" in env.chat("!locks")
    stacks = env.chat("!stacks", user=BOB)
    assert "LOCKED" in stacks and f"{BOB}: migrating the database" in stacks, stacks

    # Not the holder, no --break: told how; an admin breaks it only after confirming.
    assert "--break" in env.chat(f"!unlock {stack}")
    assert "only an admin" in env.chat(f"!unlock {stack} --break", user=BOB.replace("bob", "dan"))
    asked = env.chat(f"!unlock {stack} --break")
    code = re.search(r"!confirm ([A-Z0-9]{4})", asked)
    assert code, asked
    assert "1 lock" in env.chat("!locks")  # not broken until confirmed
    broken = env.chat(f"!confirm {code.group(1)}")
    assert f"{BOB}'s lock on {stack} broken" in broken, broken
    assert "no stack is locked" in env.chat("!locks")
    assert f"deployed {stack}" in env.chat(f"!deploy {stack} --force")


def test_a_job_queued_before_the_lock_is_refused_by_the_worker(env: BotEnv, run_id: str) -> None:
    stack = env.add_stack(f"{run_id}-lq", {"web": {}})
    assert f"deployed {stack}" in env.chat(f"!deploy {stack}")
    assert "queued" in env.ask(f"!deploy {stack} --force")  # queued, not yet run
    # Locked by the bot alone (no worker runs meanwhile), then the queue is run.
    assert f"{stack} locked" in env.ask(f"!lock {stack} hold on", user=BOB)
    env.run_queue()
    job = env.last_job()
    assert job["state"] == "refused" and f"locked by {BOB}" in job.get("summary", ""), job
    assert f"{stack} unlocked" in env.chat(f"!unlock {stack}", user=BOB)


def test_a_lock_on_all_stops_every_stack_and_bad_input_changes_nothing(
    env: BotEnv, run_id: str
) -> None:
    stack = env.add_stack(f"{run_id}-la", {"web": {}})
    assert "missing <reason...>" in env.chat("!lock all")
    assert "every stack locked" in env.chat("!lock all release freeze", user=BOB)
    # Your own lock on a stack does not lift someone else's lock on everything.
    assert f"{stack} locked" in env.chat(f"!lock {stack} mine")
    refused = env.chat(f"!deploy {stack}")
    assert f"every stack is locked by {BOB}" in refused, refused
    assert "is locked already by console:admin" in env.chat(f"!lock {stack} theirs", user=BOB)
    assert f"{stack} unlocked" in env.chat(f"!unlock {stack}")
    assert "every stack unlocked" in env.chat("!unlock all", user=BOB)
    assert f"deployed {stack}" in env.chat(f"!deploy {stack}")
