"""Removing services, the seed's last operations: `!rm <service>`, and a service taken out
of its stack file removed by `!deploy --prune`. Both ask first; neither removes a volume."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import yaml

from tests.harness import BotEnv, remove_stacks, removed, stack_yaml, wait_until

pytestmark = pytest.mark.swarm


@pytest.fixture(scope="module")
def bot(
    workdir: Path, redis_url: str, swarm: docker.DockerClient, run_id: str
) -> Iterator[BotEnv]:
    env = BotEnv(workdir, redis_url, "removals", deadline=30)
    env.start_in_process()
    try:
        yield env
    finally:
        env.stop_worker()
        # The bot never removes a volume; the test removes the ones it made.
        for stack in (f"{run_id}-rm", f"{run_id}-prune"):
            remove_stacks(swarm, stack)
            for volume in swarm.volumes.list(filters={"name": f"{stack}_data"}):
                wait_until(lambda v=volume: removed(v), 60, "the test volume to be free")


def write_stack(bot: BotEnv, name: str, services: list[str], volume_for: str = "") -> None:
    """A stack file with ``services``; ``volume_for`` mounts the stack's volume ``data``."""
    doc = yaml.safe_load(stack_yaml({s: {} for s in services}))
    if volume_for in doc["services"]:
        doc["services"][volume_for]["volumes"] = ["data:/data"]
    doc["volumes"] = {"data": {}}
    (bot.stacks_dir / f"{name}.yaml").write_text(yaml.safe_dump(doc))


def confirmed(bot: BotEnv, command: str) -> str:
    asked = bot.chat(command)
    code = re.search(r"!confirm ([A-Z0-9]{4})", asked)
    assert code, asked
    return asked + bot.chat(f"!confirm {code.group(1)}")


def services(swarm: docker.DockerClient, stack: str) -> set[str]:
    found = swarm.services.list(filters={"label": f"com.docker.stack.namespace={stack}"})
    return {s.name for s in found}


def test_rm_asks_first_removes_the_service_and_keeps_its_volume(
    bot: BotEnv, swarm: docker.DockerClient, run_id: str
) -> None:
    stack = f"{run_id}-rm"
    write_stack(bot, stack, ["web", "db"], volume_for="db")
    assert f"deployed {stack}: 2 services converged" in bot.chat(f"!deploy {stack}")
    asked = bot.chat(f"!rm {stack}_db")
    assert f"this removes service {stack}_db and its tasks (its volumes are kept)" in asked
    assert services(swarm, stack) == {f"{stack}_web", f"{stack}_db"}, "removed before asked"
    out = confirmed(bot, f"!rm {stack}_db")
    assert f"removed {stack}_db" in out, out
    assert f"volumes kept (the bot never deletes data): {stack}_data" in out, out
    assert services(swarm, stack) == {f"{stack}_web"}
    assert swarm.volumes.get(f"{stack}_data")


def test_a_service_taken_out_of_the_file_goes_only_with_prune(
    bot: BotEnv, swarm: docker.DockerClient, run_id: str
) -> None:
    stack = f"{run_id}-prune"
    write_stack(bot, stack, ["web", "old"], volume_for="old")
    assert f"deployed {stack}: 2 services converged" in bot.chat(f"!deploy {stack}")
    write_stack(bot, stack, ["web"])  # the seed's way: out of the yaml, then deploy

    out = bot.chat(f"!diff {stack}")
    row = next(line for line in out.splitlines() if f"{stack}_old" in line)
    assert re.search(r"would be removed\s+no\s+not in the file", row), out

    # A plain deploy removes nothing, and says what it left.
    out = bot.chat(f"!deploy {stack}")
    assert f"still running though no longer in the file: {stack}_old" in out, out
    assert f"!deploy {stack} --prune removes them (their volumes stay)" in out
    assert services(swarm, stack) == {f"{stack}_web", f"{stack}_old"}

    asked = bot.chat(f"!deploy {stack} --prune")
    assert f"this deploys stack {stack} and removes its services that are no longer" in asked
    assert services(swarm, stack) == {f"{stack}_web", f"{stack}_old"}, "pruned before asked"
    out = confirmed(bot, f"!deploy {stack} --prune")
    assert f"removed (no longer in the file): {stack}_old" in out, out
    assert f"volumes kept (the bot never deletes data): {stack}_data" in out, out
    wait_until(lambda: services(swarm, stack) == {f"{stack}_web"}, 30, "the old service to go")
    assert swarm.volumes.get(f"{stack}_data")
    assert f"{stack}: the file matches what runs" in bot.chat(f"!diff {stack}")
