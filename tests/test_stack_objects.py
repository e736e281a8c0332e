"""Configs and secrets from files: editing one and redeploying just works (swarm's objects
are immutable; the plain CLI fails with "only updates to Labels are allowed")."""

from __future__ import annotations

import base64

import docker
import pytest

from tests.harness import BotEnv, stack_yaml

pytestmark = pytest.mark.swarm


def config_names(swarm: docker.DockerClient, service: str) -> list[str]:
    spec = swarm.services.get(service).attrs["Spec"]["TaskTemplate"]["ContainerSpec"]
    return [c["ConfigName"] for c in spec.get("Configs") or []]


def test_an_edited_config_file_is_deployed_as_a_new_config(
    bot: BotEnv, run_id: str, swarm: docker.DockerClient
) -> None:
    stack = f"{run_id}-conf"
    (bot.stacks_dir / f"{stack}.conf").write_text("colour = blue\n")
    (bot.stacks_dir / f"{stack}.yaml").write_text(
        stack_yaml({"app": {}}).replace(
            "    init: true\n",
            "    init: true\n    configs: [{source: settings, target: /etc/app.conf}]\n",
        )
        + f"configs:\n  settings:\n    file: ./{stack}.conf\n"
    )
    out = bot.chat(f"!deploy {stack}")
    assert f"deployed {stack}: 1 service converged" in out, out
    [first] = config_names(swarm, f"{stack}_app")
    assert first.startswith(f"{stack}_settings-")

    (bot.stacks_dir / f"{stack}.conf").write_text("colour = green\n")
    out = bot.chat(f"!diff {stack}")
    assert "configs/secrets changed: settings" in out, out
    assert "green" not in out  # contents are never shown
    out = bot.chat(f"!deploy {stack}")
    assert f"deployed {stack}: 1 service converged" in out, out
    [second] = config_names(swarm, f"{stack}_app")
    assert second != first and second.startswith(f"{stack}_settings-")
    data = swarm.configs.get(second).attrs["Spec"]["Data"]
    assert base64.b64decode(data) == b"colour = green\n"
    # The version no service uses any more is removed, and the answer says so.
    assert f"old config/secret versions no service uses, removed: {first}" in out, out
    assert not swarm.configs.list(filters={"name": first})

    out = bot.chat(f"!deploy {stack}")
    assert f"{stack} already matches its file: nothing deployed" in out, out
    assert config_names(swarm, f"{stack}_app") == [second]
