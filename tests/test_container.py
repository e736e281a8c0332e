"""swarmbot as an operator runs it: the image from scripts/build-image.sh, stacks/swarmbot.yaml
deployed on the local swarm, and a conversation with the containerised bot in a real Matrix
room.

The image is built offline, as CI here must (no registry): a debootstrap'd Debian base,
wheels built on this host, through the one Dockerfile. The stack file is used as shipped,
beside an override file of the kind the docs describe, which only says what differs on this
machine: the images built here, the host network (this kernel has no IPVS for overlay
virtual IPs), a free port for Redis, and where the stack files are.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests

from tests.harness import ROOT, free_port, remove_stacks, stack_yaml, wait_until
from tests.synapse import MatrixUser, Synapse, wait_for_reply

pytestmark = pytest.mark.container

LOCAL_BASE = "swarmbot-local/python:3.11-bookworm"
REDIS_IMAGE = "127.0.0.1:5999/swarmbot-test/redis:7"
DOCKER = "/usr/local/bin/docker" if Path("/usr/local/bin/docker").exists() else "docker"


def docker_cli(*args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        [DOCKER, *args], capture_output=True, text=True, cwd=cwd, timeout=600, check=False
    )
    assert proc.returncode == 0, f"docker {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def image(swarm: docker.DockerClient, run_id: str) -> Iterator[str]:
    """The swarmbot image, built the way CI here must build it; and a Redis image made
    from the same local base with Debian's redis-server (no registry for the official one)."""
    tag = f"127.0.0.1:5999/swarmbot-test/swarmbot:{run_id}"
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts/build-image.sh"), tag],
        env={**os.environ, "SWARMBOT_BUILD": "offline"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    try:
        swarm.images.get(REDIS_IMAGE)
    except docker.errors.ImageNotFound:
        dockerfile = (
            f"FROM {LOCAL_BASE}\n"
            "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq"
            " --no-install-recommends redis-server >/dev/null && rm -rf /var/lib/apt/lists/*\n"
        )
        subprocess.run(
            [DOCKER, "build", "-q", "-t", REDIS_IMAGE, "-"],
            input=dockerfile,
            text=True,
            capture_output=True,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
            check=True,
            timeout=600,
        )
    yield tag
    remove_stacks(swarm, f"{run_id}-bot")
    wait_until(
        lambda: not swarm.containers.list(filters={"ancestor": tag}), 60, "bot containers to go"
    )
    swarm.images.remove(tag, force=True)


class Deployed:
    """The running stack and the people in its rooms."""

    def __init__(
        self,
        synapse: Synapse,
        stacks: Path,
        stack: str,
        alice: MatrixUser,
        bot_id: str,
        room: str,
        notices: str,
        ports: dict[str, int],
    ) -> None:
        self.synapse, self.stacks, self.stack = synapse, stacks, stack
        self.alice, self.bot_id, self.room, self.notices = alice, bot_id, room, notices
        self.ports = ports

    def ask(self, text: str, expect: str, timeout: float = 90) -> tuple[str, str]:
        """Say ``text`` in the room; the command's event ID and the reply containing ``expect``."""
        command = self.alice.say(self.room, text)
        try:
            reply = wait_for_reply(self.alice, self.room, command, expect, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None
        assert reply["sender"] == self.bot_id
        return command, reply["content"]["body"]

    def logs(self) -> str:
        """The containers' own logs, for a failure's report."""
        out = []
        for service in ("bot", "worker"):
            proc = subprocess.run(
                [DOCKER, "service", "logs", "--raw", "--tail", "40", f"{self.stack}_{service}"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            out.append(f"--- {service} ---\n{proc.stdout}{proc.stderr}")
        return "\n".join(out)

    def answers(self, command: str, contains: str) -> list[str]:
        return [
            e["content"]["body"]
            for e in self.alice.thread(self.room, command)
            if e["sender"] == self.bot_id and contains in e["content"].get("body", "")
        ]

    def notices_about(self, text: str) -> list[str]:
        return [
            e["content"]["body"]
            for e in self.alice.messages(self.notices)
            if e["sender"] == self.bot_id and text in e["content"].get("body", "")
        ]

    def metrics(self, role: str) -> str:
        resp = requests.get(f"http://127.0.0.1:{self.ports[role]}/metrics", timeout=5)
        resp.raise_for_status()
        return resp.text


def container_config(synapse: Synapse, bot: MatrixUser, alice: MatrixUser, **v: object) -> str:
    return textwrap.dedent(
        f"""
        # The stack's config, as an operator writes it (see stacks/config/swarmbot.toml).
        [bot]
        stacks_dir = "/srv/swarmbot/stacks"
        adapters = ["matrix"]

        [redis]
        prefix = "{v["prefix"]}"

        [queue]
        worker_timeout_seconds = 4

        [deploy]
        deadline_seconds = 120
        resolve_image = "never"

        [health]
        bot_port = {v["bot_port"]}
        worker_port = {v["worker_port"]}

        [notices]
        quiet_seconds = 1
        [[notices.route]]
        # This run's stacks only: other test modules' stacks come and go on the same swarm.
        stacks = ["{v["prefix"]}*"]
        matrix = ["{v["notices"]}"]

        [matrix]
        homeserver = "{synapse.url}"
        user_id = "{bot.user_id}"
        rooms = ["{v["room"]}", "{v["notices"]}"]

        [roles.ops]
        users = ["{alice.user_id}"]
        commands = ["*"]
        stacks = ["*"]
        {v.get("extra", "")}
        """
    )


@pytest.fixture(scope="module")
def deployed(
    image: str, workdir: Path, swarm: docker.DockerClient, run_id: str, synapse: Synapse
) -> Iterator[Deployed]:
    stack = f"{run_id}-bot"
    created: list[docker.models.secrets.Secret] = []
    node = swarm.nodes.list(filters={"role": "manager"})[0]
    try:
        bot = synapse.register("container-bot")
        alice = synapse.register("container-alice")
        room = alice.create_room(invite=[bot.user_id])
        notices = alice.create_room(invite=[bot.user_id])
        ports = {"redis": free_port(), "bot": free_port(), "worker": free_port()}
        values = {
            "prefix": run_id,
            "bot_port": ports["bot"],
            "worker_port": ports["worker"],
            "room": room,
            "notices": notices,
        }

        # What the operator does, from docs/OPERATING.md: secrets, the Redis node label,
        # the stacks directory with the config, then the first deploy by hand.
        for name, data in (("signing", secrets.token_urlsafe(48)), ("matrix", bot.token)):
            created.append(
                swarm.secrets.create(name=f"{run_id}_{name}", data=data.encode(), labels={})
            )
        spec = node.attrs["Spec"]
        spec.setdefault("Labels", {})["swarmbot.redis"] = "true"
        node.update(spec)

        stacks = workdir / "container-stacks"
        (stacks / "config").mkdir(parents=True)
        (stacks / f"{stack}.yaml").write_text((ROOT / "stacks/swarmbot.yaml").read_text())
        (stacks / f"{stack}.override.yaml").write_text(
            textwrap.dedent(
                f"""
                version: "3.8"
                services:
                  redis:
                    image: {REDIS_IMAGE}
                    command: ["redis-server", "--port", "{ports["redis"]}", "--bind",
                              "127.0.0.1", "--appendonly", "yes", "--appendfsync", "always",
                              "--save", "", "--dir", "/data"]
                  bot:
                    image: {image}
                    environment:
                      SWARMBOT_REDIS_URL: redis://127.0.0.1:{ports["redis"]}/0
                    healthcheck: {{interval: 2s, start_period: 60s}}
                  worker:
                    image: {image}
                    environment:
                      SWARMBOT_REDIS_URL: redis://127.0.0.1:{ports["redis"]}/0
                    healthcheck: {{interval: 2s, start_period: 60s}}
                    volumes:
                      - {stacks}:/srv/swarmbot/stacks:ro
                networks:
                  internal:
                    external: true
                    name: host
                secrets:
                  swarmbot_signing_secret:
                    external: true
                    name: {run_id}_signing
                  swarmbot_matrix_token:
                    external: true
                    name: {run_id}_matrix
                """
            )
        )
        (stacks / "config/swarmbot.toml").write_text(
            container_config(synapse, bot, alice, **values)
        )
        (stacks / f"{run_id}-app.yaml").write_text(stack_yaml({"web": {}}))
        docker_cli(
            "stack", "deploy", "--resolve-image", "never",
            "-c", f"{stack}.yaml", "-c", f"{stack}.override.yaml", stack,
            cwd=stacks,
        )  # fmt: skip
        wait_until(
            lambda: (
                alice.membership(room, bot.user_id) == "join"
                and alice.membership(notices, bot.user_id) == "join"
            ),
            120,
            "the containerised bot to join its rooms",
        )
        wait_until(lambda: _all_running(swarm, stack), 120, "the stack's tasks to be healthy")
        yield Deployed(synapse, stacks, stack, alice, bot.user_id, room, notices, ports)
    finally:
        remove_stacks(swarm, stack)
        remove_stacks(swarm, f"{run_id}-app")
        wait_until(
            lambda: not [s for s in swarm.services.list() if s.name.startswith(stack)],
            60,
            "the bot's stack to go",
        )
        for secret in created:
            wait_until(lambda s=secret: _removed(s), 60, "the secret to be free")
        # The stack's volumes (Redis's data, the worker's ledger): swarmbot never removes a
        # volume, so the test removes its own, once no container holds them.
        for volume in swarm.volumes.list(filters={"label": f"com.docker.stack.namespace={stack}"}):
            wait_until(lambda v=volume: _removed(v), 60, "the stack's volume to be free")
        spec = swarm.nodes.get(node.id).attrs["Spec"]
        spec.get("Labels", {}).pop("swarmbot.redis", None)
        swarm.nodes.get(node.id).update(spec)


def _all_running(swarm: docker.DockerClient, stack: str) -> bool:
    """Every service of the stack has all its tasks running (with a HEALTHCHECK: healthy)."""
    services = swarm.api.services(
        filters={"label": f"com.docker.stack.namespace={stack}"}, status=True
    )
    return len(services) == 3 and all(
        s["ServiceStatus"]["RunningTasks"] == s["ServiceStatus"]["DesiredTasks"] for s in services
    )


def _removed(obj: docker.models.secrets.Secret | docker.models.volumes.Volume) -> bool:
    try:
        obj.remove()
    except docker.errors.NotFound:
        return True
    except docker.errors.APIError:
        return False  # still in use by a task that is stopping
    return True


def test_services_answered_by_the_containerised_bot(deployed: Deployed) -> None:
    _, body = deployed.ask(f"!services {deployed.stack}", "REPLICAS")
    for service in ("bot", "worker", "redis"):
        assert re.search(rf"{deployed.stack}_{service}\s+replicated\s+1/1", body), body


def test_deploy_and_restart_from_chat_with_a_notice(
    deployed: Deployed, swarm: docker.DockerClient, run_id: str
) -> None:
    app = f"{run_id}-app"
    deployed.ask(f"!deploy {app}", f"deployed {app}: 1 service converged")
    notice = wait_until(lambda: deployed.notices_about(f"{app} deployed"), 60, "the notice")[0]
    assert f"by {deployed.alice.user_id} via !deploy {app}, job " in notice, notice

    service = f"{app}_web"
    before = swarm.services.get(service).attrs["Spec"]["TaskTemplate"].get("ForceUpdate", 0)
    deployed.ask(f"!restart {service}", f"restarted {service}: 1/1 running")
    after = swarm.services.get(service).attrs["Spec"]["TaskTemplate"].get("ForceUpdate", 0)
    assert after == before + 1


def test_containers_are_healthy_and_metrics_count(
    deployed: Deployed, swarm: docker.DockerClient
) -> None:
    def health() -> set[str]:
        containers = swarm.containers.list(
            filters={"label": f"com.docker.stack.namespace={deployed.stack}"}
        )
        return {
            c.attrs["State"].get("Health", {}).get("Status", "none")
            for c in containers
            if c.labels.get("com.docker.swarm.service.name", "").endswith(("_bot", "_worker"))
        }

    wait_until(lambda: health() == {"healthy"}, 90, "the image's HEALTHCHECK to pass")
    bot = deployed.metrics("bot")
    assert re.search(r'swarmbot_commands_total\{command="restart",outcome="queued"\} [1-9]', bot)
    worker = deployed.metrics("worker")
    assert re.search(r'swarmbot_jobs_total\{op="restart",state="succeeded"\} [1-9]', worker)
    assert re.search(r'swarmbot_deploy_outcomes_total\{outcome="converged"\} [1-9]', worker)
    assert re.search(r"swarmbot_notices_posted_total [1-9]", worker)
    assert "swarmbot_job_duration_seconds_bucket" in worker


def test_deploying_its_own_stack_replaces_the_worker_and_answers_once(
    deployed: Deployed, swarm: docker.DockerClient
) -> None:
    """`!deploy swarmbot`: the job replaces the worker running it (and the bot); the new
    worker takes the job over and it is answered exactly once."""
    stack = deployed.stack
    old_worker = {t["ID"] for t in swarm.services.get(f"{stack}_worker").tasks()}
    config = deployed.stacks / "config/swarmbot.toml"
    config.write_text(config.read_text() + "\n[safety]\nrate_limit_per_minute = 60\n")

    command, _ = deployed.ask(f"!deploy {stack}", f"deployed {stack}: 3 services converged", 240)
    new_tasks = {
        t["ID"]
        for t in swarm.services.get(f"{stack}_worker").tasks(filters={"desired-state": "running"})
    }
    assert new_tasks and not new_tasks & old_worker, "the worker was not replaced"
    # Anything the new bot or worker would do twice happens when they start; a later
    # command answered means they are past it.
    deployed.ask("!ping", "pong")
    assert len(deployed.answers(command, f"deployed {stack}")) == 1
    notice = wait_until(lambda: deployed.notices_about(f"{stack} deployed"), 60, "the notice")
    assert len(notice) == 1, notice
