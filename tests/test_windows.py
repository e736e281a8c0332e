"""Deploy windows and scheduled jobs on the real swarm, in-process: a window a few seconds
wide opens while the test waits; a deploy before it is refused with when it opens,
`--when-open` runs it then, `--now` runs it at once after a confirmation; the worker refuses
what the bot could not tell (a short service name); scheduled jobs are listed, cancelled,
and bad times refused."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import pytest

from tests.harness import BotEnv, wait_until

pytestmark = pytest.mark.swarm
OPENS_IN = 8.0  # seconds from the fixture's start: room for the refusals before it


def clock(at: datetime) -> str:
    return at.strftime("%H:%M:%S")


@pytest.fixture(scope="module")
def env(
    workdir: Path, redis_url: str, swarm: docker.DockerClient, run_id: str
) -> Iterator[BotEnv]:
    now = datetime.now(UTC)
    opens = now + timedelta(seconds=OPENS_IN)
    closed_from = now + timedelta(hours=6)
    env = BotEnv(
        workdir,
        redis_url,
        "windows",
        deadline=25,
        extra_roles=f"""
        [windows]
        timezone = "UTC"
        "{run_id}-wa*" = ["daily {clock(opens)}-{clock(opens + timedelta(seconds=40))}"]
        "{run_id}-wc*" = ["daily {clock(closed_from)}-{clock(closed_from + timedelta(minutes=1))}"]
        """,
    )
    env.opens = opens.timestamp()  # type: ignore[attr-defined]
    env.start_in_process()
    yield env


def test_a_deploy_outside_its_window_is_refused_or_runs_when_it_opens(
    env: BotEnv, run_id: str, swarm: docker.DockerClient
) -> None:
    stack = env.add_stack(f"{run_id}-wa", {"web": {}})
    refused = env.chat(f"!deploy {stack}")
    assert f"refused: {stack} is outside its deploy windows (daily " in refused, refused
    assert "the next opens" in refused and "--when-open" in refused, refused
    assert not swarm.services.list(filters={"name": f"{stack}_web"})
    windows = env.chat("!windows")
    assert f"{run_id}-wa*" in windows and "opens" in windows, windows

    said = env.chat(f"!deploy {stack} --when-open")
    assert re.search(rf"scheduled as job \d+ for \d\d:\d\d:\d\d UTC .*: !deploy {stack}", said)
    assert f"deployed {stack}" in said, said  # the chat waited for its time, and its answer
    assert time.time() >= env.opens  # type: ignore[attr-defined]
    # Its pre-flight ran when it was scheduled (job N + 1), before the deploy itself.
    assert re.search(rf"\[job \d+\] {stack}: no problems found", said), said


def test_now_overrides_a_closed_window_after_a_confirmation_and_the_worker_checks(
    env: BotEnv, run_id: str, swarm: docker.DockerClient
) -> None:
    stack = env.add_stack(f"{run_id}-wc", {"gate": {}})
    asked = env.chat(f"!deploy {stack} --now")
    code = re.search(r"!confirm ([A-Z0-9]{4})", asked)
    assert code, asked
    assert f"deployed {stack}" in env.chat(f"!confirm {code.group(1)}")
    # A short service name: the bot cannot tell its stack; the worker refuses the restart.
    short = env.chat("!restart gate")
    assert "refused" in short and f"{stack} is outside its deploy windows" in short, short


def test_scheduled_jobs_are_listed_cancelled_and_bad_times_refused(
    env: BotEnv, run_id: str, swarm: docker.DockerClient
) -> None:
    stack = env.add_stack(f"{run_id}-ws", {"web": {}})
    assert "is in the past" in env.chat(f"!deploy {stack} at 2020-01-01T10:00")
    assert "is not a time" in env.chat(f"!deploy {stack} at teatime")
    assert "is not a duration" in env.chat(f"!deploy {stack} in soon")
    said = env.ask(f"!deploy {stack} in 3s")
    job = re.search(r"scheduled as job (\d+) for", said)
    assert job, said
    assert "scheduled for" in env.chat("!jobs")
    assert f"cancelled job {job.group(1)}" in env.chat(f"!cancel {job.group(1)}")
    r = env.redis()

    def due_and_dropped() -> bool:
        env.run_queue()  # the in-process worker: moves what is due, runs what is queued
        return not r.zcard(f"{env.prefix}:scheduled")

    wait_until(due_and_dropped, 15, "the job's time to pass")
    assert r.hget(f"{env.prefix}:job:{job.group(1)}", "state") == "cancelled"
    assert not swarm.services.list(filters={"name": f"{stack}_web"})
