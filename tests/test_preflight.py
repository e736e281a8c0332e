"""!check, !diff and unchanged redeploys, against the real swarm and the real docker CLI."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import textwrap

import docker
import pytest
import yaml

from tests.harness import TEST_IMAGE, BotEnv, stack_yaml, wait_until

pytestmark = pytest.mark.swarm

FRESH = itertools.count()

BROKEN = textwrap.dedent(
    f"""
    version: "3.8"
    services:
      web:
        image: {TEST_IMAGE.rsplit(":", 1)[0]}
        build: .
        restart: always
        depends_on: [db]
        environment:
          SITE: "www.${{NOT_CONFIGURED}}"
        volumes:
          - ./no-such-dir:/data
        networks: [missing]
        secrets: [missing_secret]
        deploy:
          placement:
            constraints: [node.labels.gpu == yes]
      db:
        image: busybox:latest
        configs: [missing_config]
        volumes:
          - gone:/var/lib/db
    networks:
      missing:
        external: true
        name: no_such_network
    volumes:
      gone:
        external: true
        name: no_such_volume
    secrets:
      missing_secret:
        external: true
        name: no_such_secret
    configs:
      missing_config:
        external: true
        name: no_such_config
    """
)


def test_check_reports_every_kind_of_problem(bot: BotEnv, run_id: str) -> None:
    stack = f"{run_id}-broken"
    (bot.stacks_dir / f"{stack}.yaml").write_text(BROKEN)
    out = bot.chat(f"!check {stack}")
    assert f"{stack}: 7 errors, 5 warnings" in out, out
    for expected in [
        r"-\s+\$\{NOT_CONFIGURED\}\s+variable NOT_CONFIGURED is not set",
        r"-\s+networks.missing\s+external network no_such_network does not exist",
        r"-\s+secrets.missing_secret\s+external secret no_such_secret does not exist",
        r"-\s+configs.missing_config\s+external config no_such_config does not exist",
        r"-\s+volumes.gone\s+external volume no_such_volume does not exist",
        r"web\s+volumes\s+bind mount source ./no-such-dir does not exist",
        r"web\s+deploy.placement.constraints\s+no node satisfies node.labels.gpu == yes",
        r"web\s+image\s+\S+busybox has no tag: pin one\s+warning",
        r"db\s+image\s+busybox:latest is on :latest: pin a version\s+warning",
        r"web\s+build\s+ignored by docker stack deploy: images are not built on deploy",
        r"web\s+restart\s+ignored by docker stack deploy: use deploy.restart_policy",
        r"web\s+depends_on\s+ignored by docker stack deploy: swarm starts services in no order",
    ]:
        assert re.search(expected, out), f"{expected!r} not in\n{out}"


def test_clean_file_has_no_problems(bot: BotEnv, run_id: str) -> None:
    stack = bot.add_stack(f"{run_id}-clean", {"ok": {}})
    assert f"{stack}: no problems found" in bot.chat(f"!check {stack}")


@pytest.fixture()
def deployed(bot: BotEnv, run_id: str, swarm: docker.DockerClient) -> str:
    """A freshly deployed stack of its own for each test."""
    stack = bot.add_stack(
        f"{run_id}-diff{next(FRESH)}",
        {"api": {"replicas": 1, "environment": {"MODE": "a", "OLD": "x"}}, "gone": {}},
    )
    assert "converged" in bot.chat(f"!deploy {stack}")
    return stack


def test_diff_shows_changes_and_changes_nothing(
    bot: BotEnv, deployed: str, swarm: docker.DockerClient
) -> None:
    stack = deployed
    other_tag = TEST_IMAGE.replace(":1", ":2")
    swarm.images.get(TEST_IMAGE).tag(other_tag)
    bot.add_stack(
        stack,
        {
            "api": {"image": other_tag, "replicas": 2, "environment": {"MODE": "b", "NEW": "y"}},
            "fresh": {},
        },
    )
    versions = {
        s.name: s.version
        for s in swarm.services.list(filters={"label": f"com.docker.stack.namespace={stack}"})
    }
    out = bot.chat(f"!diff {stack}")
    assert f"{stack}: a deploy would change 3 services" in out, out
    api = next(line for line in out.splitlines() if f"{stack}_api " in line)
    assert "changed" in api and " yes " in api
    assert f"image {TEST_IMAGE} -> {other_tag}" in api and "replicas 1 -> 2" in api
    assert "environment added: NEW" in api and "environment removed: OLD" in api
    assert (
        "environment changed: MODE" in api
        and "=b" not in api
        and "y" not in api.split("NEW")[1][:3]
    )
    assert re.search(rf"{stack}_fresh\s+new\s+yes", out)
    assert re.search(rf"{stack}_gone\s+would be removed\s+no\s+not in the file", out), out
    after = {
        s.name: s.version
        for s in swarm.services.list(filters={"label": f"com.docker.stack.namespace={stack}"})
    }
    assert after == versions, "!diff changed the swarm"


def test_unchanged_redeploy_changes_nothing_unless_forced(
    bot: BotEnv, deployed: str, swarm: docker.DockerClient
) -> None:
    stack = deployed
    service = swarm.services.get(f"{stack}_api")
    version = service.version
    out = bot.chat(f"!deploy {stack}")
    assert f"{stack} already matches its file: nothing deployed" in out, out
    service.reload()
    assert service.version == version
    out = bot.chat(f"!deploy {stack} --force")
    assert f"deployed {stack}: 2 services converged" in out, out
    service.reload()
    assert service.version > version


def test_outside_change_is_not_taken_for_unchanged(
    bot: BotEnv, deployed: str, swarm: docker.DockerClient
) -> None:
    """Someone scaled the service by hand: the file no longer matches what runs."""
    stack = deployed
    swarm.services.get(f"{stack}_api").scale(3)
    out = bot.chat(f"!diff {stack}")
    assert "replicas 3 -> 1" in out, out
    out = bot.chat(f"!deploy {stack}")
    assert f"deployed {stack}" in out, out
    assert swarm.services.get(f"{stack}_api").attrs["Spec"]["Mode"]["Replicated"]["Replicas"] == 1


def test_diff_says_restarts_exactly_where_swarm_replaces_tasks(
    bot: BotEnv, run_id: str, swarm: docker.DockerClient
) -> None:
    """A stack deployed by hand (no swarmbot labels), then changed in place and in its
    tasks: each !diff is checked against what the next deploy made swarm do."""
    stack = f"{run_id}-byhand"
    file = bot.stacks_dir / f"{stack}.yaml"
    doc = yaml.safe_load(stack_yaml({"web": {}}))
    file.write_text(yaml.safe_dump(doc))
    cli = shutil.which("docker") or "docker"
    subprocess.run(
        [cli, "stack", "deploy", "--resolve-image", "never", "-c", str(file), stack],
        check=True,
        capture_output=True,
    )
    service = f"{stack}_web"

    def tasks() -> set[str]:
        wait_until(
            lambda: (
                swarm.services.get(service).attrs.get("UpdateStatus", {}).get("State")
                in (None, "completed")
            ),
            60,
            "the update to finish",
        )
        running = swarm.services.get(service).tasks(filters={"desired-state": "running"})
        return {t["ID"] for t in running if t["Status"]["State"] == "running"}

    first = wait_until(tasks, 60, "the task to run")

    # Deployed by hand: swarmbot's own labels are no change; a deploy that adds them anyway
    # replaces no task.
    assert f"{stack}: the file matches what runs" in bot.chat(f"!diff {stack}")
    assert "converged" in bot.chat(f"!deploy {stack} --force")
    assert tasks() == first

    # A service label: changed in place.
    doc["services"]["web"]["deploy"]["labels"] = {"team": "ops"}
    file.write_text(yaml.safe_dump(doc))
    out = bot.chat(f"!diff {stack}")
    row = next(line for line in out.splitlines() if service in line)
    assert "labels changed: team" in row and re.search(r"changed\s+no\s", row), out
    assert "converged" in bot.chat(f"!deploy {stack}")
    assert tasks() == first

    # The command: every task replaced.
    doc["services"]["web"]["command"] = ["sh", "-c", "sleep 3600 # v2"]
    file.write_text(yaml.safe_dump(doc))
    out = bot.chat(f"!diff {stack}")
    row = next(line for line in out.splitlines() if service in line)
    assert "command changed" in row and re.search(r"changed\s+yes\s", row), out
    assert "converged" in bot.chat(f"!deploy {stack}")
    assert not tasks() & first


@pytest.mark.parametrize(
    ("details", "said"),
    [
        (["environment removed: HELD"], "environment added: HELD"),
        (["environment added: OLD"], "environment removed: OLD"),
        (["environment changed: LEVEL"], "environment changed: LEVEL"),
        (["image web:2 -> web:1"], "image web:1 -> web:2"),
        (["replicas 1 -> 3", "mounts changed"], "replicas 3 -> 1; mounts changed"),
    ],
)
def test_drift_says_what_was_done_by_hand_not_what_the_undo_does(
    details: list[str], said: str
) -> None:
    from bot.swarm.preflight import by_hand

    change = {"service": "dev_web", "change": "changed", "details": details, "restarts": True}
    assert by_hand(change) == said  # type: ignore[arg-type]
