"""``!deploy all``: configured stacks first, then the rest, stopping at the first failure."""

from __future__ import annotations

import re
from pathlib import Path

import docker
import pytest

from tests.harness import BotEnv

pytestmark = pytest.mark.swarm


def test_deploy_all_orders_and_stops_at_first_failure(
    workdir: Path, redis_url: str, swarm: docker.DockerClient, run_id: str
) -> None:
    net, base = f"{run_id}-all-net", f"{run_id}-all-base"
    env = BotEnv(workdir, redis_url, "deploy-all", deadline=25, first=(net, base))
    # Alphabetically these would run broken, net, base, zzz; configured order puts net, base first.
    broken = env.add_stack(f"{run_id}-all-broken", {"bad": {"command": ["false"]}})
    env.add_stack(base, {"db": {}})
    env.add_stack(net, {"proxy": {}})
    zzz = env.add_stack(f"{run_id}-all-zzz", {"late": {}})
    env.start_worker()
    try:
        asked = env.chat("!deploy all")
        assert "this deploys every stack in order, stopping at the first failure" in asked
        code = re.search(r"!confirm ([A-Z0-9]{4})", asked).group(1)
        out = env.chat(f"!confirm {code}")
    finally:
        env.stop_worker()
    lines = out.splitlines()
    heads = (f"deployed {net}:", f"deployed {base}:", f"deploy of {broken} FAILED")
    order = [next(i for i, line in enumerate(lines) if line.startswith(h)) for h in heads]
    assert order == sorted(order), out
    assert f"deploy of {broken} FAILED" in out
    assert f"not deployed (stopped at the first failure): {zzz}" in out
    assert "deploy all stopped: 2 of 4 stacks deployed" in out
    namespaces = {
        s.attrs["Spec"]["Labels"].get("com.docker.stack.namespace") for s in swarm.services.list()
    }
    assert {net, base, broken} <= namespaces
    assert zzz not in namespaces


def test_deploy_all_needs_a_role_over_every_stack(bot: BotEnv) -> None:
    jobs = bot.queued_jobs()
    out = bot.chat("!deploy all", user="console:dev")
    assert "refused" in out and "all stacks" in out, out
    assert bot.queued_jobs() == jobs
