"""``!scale``: a command added as one file (commands/scale.py), against the real swarm."""

from __future__ import annotations

import docker
import pytest

from tests.harness import BotEnv

pytestmark = pytest.mark.swarm


def running(swarm: docker.DockerClient, name: str) -> int:
    tasks = swarm.services.get(name).tasks(filters={"desired-state": "running"})
    return sum(t["Status"]["State"] == "running" for t in tasks)


def test_scale_up_and_down_converges_and_reports(
    bot: BotEnv, run_id: str, swarm: docker.DockerClient
) -> None:
    stack = bot.add_stack(f"{run_id}-app-scale", {"web": {}})
    assert "] deployed" in bot.chat(f"!deploy {stack}")
    out = bot.chat(f"!scale {stack}_web 3", user="console:admin")
    assert f"] scaled {stack}_web: 3/3 running" in out, out
    spec = swarm.services.get(f"{stack}_web").attrs["Spec"]
    assert spec["Mode"]["Replicated"]["Replicas"] == 3 and running(swarm, f"{stack}_web") == 3
    out = bot.chat(f"!scale {stack}_web 1")
    assert f"] scaled {stack}_web: 1/1 running" in out, out
    assert swarm.services.get(f"{stack}_web").attrs["Spec"]["Mode"]["Replicated"] == {
        "Replicas": 1
    }


def test_scale_needs_its_permission_and_a_number(bot: BotEnv, run_id: str) -> None:
    out = bot.chat(f"!scale {run_id}-app-scale_web 2", user="console:dev")
    assert "refused: your roles (developer) do not include the command `scale`" in out, out
    out = bot.chat(f"!scale {run_id}-app-scale_web lots", f"!scale {run_id}-app-scale_web 101")
    assert "`lots` is not a number of replicas from 0 to 100" in out, out
    assert "`101` is not a number of replicas from 0 to 100" in out, out
