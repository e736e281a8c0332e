"""``!deploy all``: each stack once the stacks it needs are up, the others in parallel; a
failure stops only the stacks that need the failed one."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import docker
import pytest

from tests.harness import BotEnv

pytestmark = pytest.mark.swarm


def _at(stamp: str) -> float:
    """A Docker timestamp (RFC 3339, nanoseconds) as a Unix time."""
    head, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float(f"0.{frac or 0}")


def _service(swarm: docker.DockerClient, stack: str) -> docker.models.services.Service:
    (service,) = swarm.services.list(filters={"label": f"com.docker.stack.namespace={stack}"})
    return service


def test_deploy_all_runs_in_waves_and_a_failure_stops_only_what_needs_it(
    workdir: Path, redis_url: str, swarm: docker.DockerClient, run_id: str
) -> None:
    net, base = f"{run_id}-all-net", f"{run_id}-all-base"
    env = BotEnv(workdir, redis_url, "deploy-all", deadline=25, first=(net, base))
    # net and base are `deploy.first`: they go together, before the rest. `broken` fails
    # after 4 s, twice (within its 10 s monitor window); `needy` uses its volume.
    broken = env.add_stack(
        f"{run_id}-all-broken",
        {
            "bad": {
                "command": ["sh", "-c", "sleep 4; exit 3"],
                "update_config": {"monitor": "10s"},
            }
        },
    )
    needy = env.add_stack(f"{run_id}-all-needy", {"app": {}})
    with (env.stacks_dir / f"{needy}.yaml").open("a") as f:
        f.write(f"volumes:\n  data:\n    external: true\n    name: {broken}_data\n")
    # Each `first` deploy lasts at least its 4 s monitor window once its task runs.
    env.add_stack(base, {"db": {"update_config": {"monitor": "4s"}}})
    env.add_stack(net, {"proxy": {"update_config": {"monitor": "4s"}}})
    zzz = env.add_stack(f"{run_id}-all-zzz", {"late": {}})
    env.start_in_process()
    try:
        asked = env.chat("!deploy all")
        assert "each once the stacks it needs are up" in asked, asked
        code = re.search(r"!confirm ([A-Z0-9]{4})", asked).group(1)
        out = env.chat(f"!confirm {code}")
    finally:
        env.stop_worker()
    assert "deploy all: 3 of 5 stacks deployed, 1 failed" in out, out
    assert f"deployed {net}:" in out and f"deployed {base}:" in out and f"deployed {zzz}:" in out
    assert f"deploy of {broken} FAILED" in out, out
    assert f"not deployed: {needy} (needs {broken}, which failed)" in out, out
    namespaces = {
        s.attrs["Spec"]["Labels"].get("com.docker.stack.namespace") for s in swarm.services.list()
    }
    assert {net, base, broken, zzz} <= namespaces
    assert needy not in namespaces
    # In the real swarm: the rest were created only once both `first` stacks ran, and those
    # two went together; zzz and broken went at the same time: zzz was created before
    # broken's task failed.
    up = [_at(_service(swarm, s).tasks()[0]["Status"]["Timestamp"]) for s in (net, base)]
    created = {s: _at(_service(swarm, s).attrs["CreatedAt"]) for s in (net, base, zzz, broken)}
    assert min(created[zzz], created[broken]) >= max(up)
    assert created[base] < up[0] + 4 and created[net] < up[1] + 4
    failures = [
        _at(t["Status"]["Timestamp"])
        for t in _service(swarm, broken).tasks()
        if t["Status"]["State"] == "failed"
    ]
    assert failures, "broken never failed"
    assert _at(_service(swarm, zzz).attrs["CreatedAt"]) < min(failures)


def test_deploy_all_needs_a_role_over_every_stack(bot: BotEnv) -> None:
    jobs = bot.queued_jobs()
    out = bot.chat("!deploy all", user="console:dev")
    assert "refused" in out and "all stacks" in out, out
    assert bot.queued_jobs() == jobs
