"""Deploy, restart, services, ps and stacks against the real local swarm, as a user sees them."""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import pytest
import yaml

from tests.harness import MISSING_IMAGE, TEST_IMAGE, BotEnv, stack_yaml, wait_until

pytestmark = pytest.mark.swarm


def running_tasks(client: docker.DockerClient, service: str) -> set[str]:
    svc = client.services.get(service)
    return {
        t["ID"]
        for t in svc.tasks(filters={"desired-state": "running"})
        if t["Status"]["State"] == "running"
    }


@pytest.fixture(scope="module")
def app(bot: BotEnv, run_id: str) -> str:
    """A deployed two-service stack, shared by the read-only tests below."""
    stack = bot.add_stack(f"{run_id}-app", {"web": {"replicas": 2}, "restartme": {}})
    out = bot.chat(f"!deploy {stack}")
    assert f"deployed {stack}: 2 services converged" in out, out
    return stack


def test_deploy_reports_convergence_and_the_swarm_runs_it(
    app: str, swarm: docker.DockerClient
) -> None:
    assert len(running_tasks(swarm, f"{app}_web")) == 2
    assert len(running_tasks(swarm, f"{app}_restartme")) == 1
    labels = swarm.services.get(f"{app}_web").attrs["Spec"]["Labels"]
    assert labels["com.docker.stack.namespace"] == app


def test_services_lists_replicas_and_image_tag(bot: BotEnv, app: str) -> None:
    out = bot.chat(f"!services {app}")
    assert f"2 services in stack {app}, all healthy" in out
    row = next(line for line in out.splitlines() if f"{app}_web " in line)
    assert re.search(
        r"replicated\s+2/2\s+ok\s+" + re.escape(TEST_IMAGE) + r"\s+\d+[smh] ago", row
    ), row
    assert "@sha256" not in out


def test_services_shows_a_scale_down_and_an_update_as_in_progress(
    bot: BotEnv, run_id: str, swarm: docker.DockerClient
) -> None:
    """Tasks that ignore SIGTERM take their whole grace period to stop: meanwhile the
    service runs more tasks than it wants (scaling down), then has an update running.
    Neither is "all healthy", and neither is unhealthy."""
    stack = f"{run_id}-slowstop"
    doc = yaml.safe_load(stack_yaml({"web": {"replicas": 2}}))
    web = doc["services"]["web"]
    web["command"] = ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]
    web["stop_grace_period"] = "60s"
    (bot.stacks_dir / f"{stack}.yaml").write_text(yaml.safe_dump(doc))
    assert f"deployed {stack}" in bot.chat(f"!deploy {stack}")
    service = swarm.services.get(f"{stack}_web")
    cli = shutil.which("docker") or "docker"  # changes the replicas and nothing else
    subprocess.run([cli, "service", "scale", "-d", f"{stack}_web=1"], check=True)
    out = bot.chat(f"!services {stack}")
    row = next(line for line in out.splitlines() if f"{stack}_web " in line)
    assert re.search(r"replicated\s+2/1\s+scaling down\s", row), out
    assert f"1 service in stack {stack}: 1 updating or scaling" in out, out
    service.reload()
    service.force_update()
    wait_until(
        lambda: (
            (swarm.services.get(f"{stack}_web").attrs.get("UpdateStatus") or {}).get("State")
            == "updating"
        ),
        30,
        "the update to start",
    )
    out = bot.chat(f"!services {stack}")
    row = next(line for line in out.splitlines() if f"{stack}_web " in line)
    assert re.search(r"replicated\s+\d/1\s+updating\s", row), out
    assert "all healthy" not in out and "unhealthy" not in out, out
    swarm.services.get(f"{stack}_web").remove()


def test_services_without_a_stack_lists_everything(bot: BotEnv, app: str) -> None:
    out = bot.chat("!services")
    assert f"{app}_web" in out and f"{app}_restartme" in out


def test_ps_shows_tasks_by_short_name(bot: BotEnv, app: str) -> None:
    out = bot.chat("!ps restartme")
    assert f"{app}_restartme: 1 task" in out
    assert re.search(r"1\s+\S+\s+running\s+running\s+\d+[smh] ago", out), out


def test_stacks_shows_files_and_deployment(bot: BotEnv, app: str) -> None:
    out = bot.chat("!stacks")
    assert re.search(rf"{app}\s+yes\s+yes\s+2/2 healthy", out), out


def test_restart_replaces_tasks_and_waits(
    bot: BotEnv, app: str, swarm: docker.DockerClient
) -> None:
    name = f"{app}_restartme"
    before = swarm.services.get(name).attrs
    old_tasks = running_tasks(swarm, name)
    out = bot.chat("!restart restartme")
    assert f"restarted {name}: 1/1 running" in out, out
    after = swarm.services.get(name).attrs
    spec_before, spec_after = before["Spec"]["TaskTemplate"], after["Spec"]["TaskTemplate"]
    assert spec_after.get("ForceUpdate", 0) == spec_before.get("ForceUpdate", 0) + 1
    assert spec_after["ContainerSpec"]["Image"] == spec_before["ContainerSpec"]["Image"]
    new_tasks = running_tasks(swarm, name)
    assert new_tasks and not new_tasks & old_tasks


def test_failing_command_is_reported_with_its_error(bot: BotEnv, run_id: str) -> None:
    stack = bot.add_stack(
        f"{run_id}-crash", {"boom": {"command": ["sh", "-c", "echo boom >&2; exit 1"]}}
    )
    out = bot.chat(f"!deploy {stack}")
    assert f"deploy of {stack} FAILED: 1 of 1 service not converged" in out, out
    assert "failed: task: non-zero exit (1)" in out


def test_missing_image_is_reported_not_waited_on(bot: BotEnv, run_id: str) -> None:
    stack = bot.add_stack(f"{run_id}-noimage", {"ghost": {"image": MISSING_IMAGE}})
    out = bot.chat(f"!deploy {stack}")
    assert f"deploy of {stack} FAILED" in out, out
    assert "No such image" in out
    seconds = float(re.search(r"(\d+\.\d)s", out.split("FAILED", 1)[1]).group(1))
    assert seconds < 25, "reported only at the deadline"


def test_unschedulable_service_times_out_with_the_reason(bot: BotEnv, run_id: str) -> None:
    """A reservation no node can meet passes the pre-flight check; the deadline catches it."""
    stack = bot.add_stack(f"{run_id}-nowhere", {"stuck": {"reserve_cpus": 512}})
    out = bot.chat(f"!deploy {stack}")
    assert "NOT CONVERGED (deadline)" in out, out
    assert "no suitable node (insufficient resources on 1 node)" in out


def test_impossible_constraint_is_caught_before_deploying(
    bot: BotEnv, run_id: str, swarm: docker.DockerClient
) -> None:
    stack = bot.add_stack(
        f"{run_id}-nogpu", {"stuck": {"constraints": ["node.labels.gpu == yes"]}}
    )
    out = bot.chat(f"!deploy {stack}")
    stopped = "stopped: the pre-flight check found problems; nothing was deployed"
    assert f"deploy of {stack} {stopped}" in out, out
    assert re.search(
        r"stuck\s+deploy.placement.constraints\s+no node satisfies node.labels.gpu", out
    )
    assert not swarm.services.list(filters={"label": f"com.docker.stack.namespace={stack}"})


def test_ambiguous_and_unknown_names_list_candidates(bot: BotEnv, run_id: str) -> None:
    one = bot.add_stack(f"{run_id}-twin-a", {"twin": {}})
    two = bot.add_stack(f"{run_id}-twin-b", {"twin": {}})
    out = bot.chat(f"!deploy {one}", f"!deploy {two}", "!ps twin", "!restart twinn")
    assert f"`twin` is ambiguous: {one}_twin, {two}_twin" in out, out
    assert f"no service `twinn`; did you mean: {one}_twin, {two}_twin" in out


def test_unknown_stack_file_is_refused_and_nothing_deployed(
    bot: BotEnv, run_id: str, swarm: docker.DockerClient
) -> None:
    out = bot.chat(f"!deploy {run_id}-nofile")
    assert f"no stack file `{run_id}-nofile`" in out, out
    assert not swarm.services.list(
        filters={"label": f"com.docker.stack.namespace={run_id}-nofile"}
    )


def test_jobs_lists_recent_jobs_with_state(bot: BotEnv, app: str) -> None:
    out = bot.chat("!services", "!jobs")
    assert re.search(r"\d+\s+!services\s+console:admin\s+succeeded", out), out


def test_second_job_on_a_stack_waits_for_the_first(bot: BotEnv, run_id: str) -> None:
    stack = bot.add_stack(f"{run_id}-app-busy", {"slow": {"update_config": {"monitor": "3s"}}})
    bot.start_worker("busy-worker")  # two jobs at once: a worker process with its slots
    try:
        with ThreadPoolExecutor(2) as pool:
            first, second = pool.map(lambda _: bot.chat(f"!deploy {stack}"), range(2))
    finally:
        bot.stop_worker()
    # The second finds the stack as the first left it: unchanged, so it deploys nothing.
    assert "converged" in first + second and "already matches its file" in first + second
    waited = [
        out
        for out in (first, second)
        if re.search(rf"queued behind job \d+ \(!deploy {stack} by console:admin\)", out)
    ]
    assert len(waited) == 1, first + second


def test_deploy_gets_config_variables_and_nothing_else(
    workdir: Path, redis_url: str, swarm: docker.DockerClient, run_id: str
) -> None:
    """${DOMAIN} comes from config; the worker's own environment (its secret) never leaks."""
    env = BotEnv(workdir, redis_url, "variables")
    stack = env.add_stack(
        f"{run_id}-vars",
        {
            "env": {
                "environment": {
                    "SITE": "www.${DOMAIN}",
                    "LEAK": "${SWARMBOT_SIGNING_SECRET:-unset}",
                }
            }
        },
    )
    env.start_worker(env={"SWARMBOT_SIGNING_SECRET": env.secret})
    try:
        out = env.chat(f"!deploy {stack}")
    finally:
        env.stop_worker()
    assert "converged" in out, out
    container_env = swarm.services.get(f"{stack}_env").attrs["Spec"]["TaskTemplate"][
        "ContainerSpec"
    ]["Env"]
    assert "SITE=www.test.localhost" in container_env
    assert "LEAK=unset" in container_env
