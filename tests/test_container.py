"""swarmbot as an operator installs and runs it: the install commands of docs/OPERATING.md,
read from that file and run as written, then a conversation with the containerised bot in a
real Matrix room.

The image is built offline, as CI here must (no registry): a debootstrap'd Debian base,
wheels built on this host, through the one Dockerfile; Redis's image the way the docs say
for a host without Docker Hub. The stack is deployed with the docs' host-network override
(this kernel has no IPVS for overlay virtual IPs), to which the test adds only what differs
on a test machine: a free port for Redis, fast health checks, and where the stack files are.
It is the stack `swarmbot`, as the docs name it; the test skips rather than touch a
swarmbot the dockerd already runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests
import yaml

from tests.harness import (
    REDIS_TEST_IMAGE,
    ROOT,
    free_port,
    remove_stacks,
    removed,
    stack_yaml,
    swarmbot_test_image,
    wait_until,
)
from tests.synapse import MatrixUser, Synapse, wait_for_reply

pytestmark = pytest.mark.container

REDIS_IMAGE = REDIS_TEST_IMAGE
DOCKER = "/usr/local/bin/docker" if Path("/usr/local/bin/docker").exists() else "docker"
STACK = "swarmbot"  # the name the docs give it: the stack's name is its file's name
SECRETS = ("swarmbot_signing_secret", "swarmbot_matrix_token")
# What an earlier run that was killed left behind, for this run to remove.
LEFTOVERS = ROOT / ".test-run" / "install-test-objects"


def install_step(name: str) -> str:
    """The shell commands of docs/OPERATING.md's block marked ``<!-- tested: name -->``."""
    doc = (ROOT / "docs/OPERATING.md").read_text()
    found = re.search(
        rf"^( *)<!-- tested: {re.escape(name)} -->\n\1```sh\n(.*?)^\1```", doc, re.M | re.S
    )
    assert found, f"docs/OPERATING.md has no block marked tested: {name}"
    return textwrap.dedent(found.group(2))


def run_install_step(name: str, env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", install_step(name)],
        env={**os.environ, "PATH": f"{Path(DOCKER).parent}:{os.environ['PATH']}", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, f"OPERATING.md step {name!r} failed:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def docker_cli(*args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        [DOCKER, *args], capture_output=True, text=True, cwd=cwd, timeout=600, check=False
    )
    assert proc.returncode == 0, f"docker {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def image(swarm: docker.DockerClient) -> Iterator[str]:
    """The swarmbot image, built the way CI here must build it (shared with the
    manager-loss faults); Redis's, the way the docs say for a host without Docker Hub."""
    tag = swarmbot_test_image()
    # Redis's image by the docs' own command (less its `docker push`: no registry here,
    # one node uses its own images); a rebuild from the build cache takes seconds.
    step = install_step("redis-image").replace('docker push "$REDIS_IMAGE"', "")
    step = step.replace("REDIS_IMAGE=registry.example.org/redis:7-debian\n", "")
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", step],
        env={**os.environ, "SRC": str(ROOT), "REDIS_IMAGE": REDIS_IMAGE},
        check=True,
        capture_output=True,
        timeout=900,
    )
    yield tag
    remove_stacks(swarm, STACK)
    wait_until(
        lambda: not swarm.containers.list(filters={"ancestor": tag}), 60, "bot containers to go"
    )


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
        env: dict[str, str],
    ) -> None:
        self.synapse, self.stacks, self.stack = synapse, stacks, stack
        self.alice, self.bot_id, self.room, self.notices = alice, bot_id, room, notices
        self.ports, self.env = ports, env

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

        [security]
        host_access_stacks = ["swarmbot"]  # its worker mounts the docker socket

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
        # This run's stacks only (other test modules' stacks come and go on the same swarm),
        # and the bot's own.
        stacks = ["{v["prefix"]}*", "swarmbot"]
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


def _clean_leftovers(swarm: docker.DockerClient) -> None:
    """Remove what a killed earlier run of this test created (and only that), then refuse
    to go on beside a swarmbot that is someone's."""
    if LEFTOVERS.exists():
        remove_stacks(swarm, STACK)
        for line in LEFTOVERS.read_text().split():
            kind, _, ident = line.partition(":")
            with contextlib.suppress(docker.errors.NotFound):
                obj = swarm.secrets.get(ident) if kind == "secret" else swarm.volumes.get(ident)
                wait_until(lambda o=obj: removed(o), 60, "a leftover to be free")
        LEFTOVERS.unlink()
    if any(s.name.startswith(f"{STACK}_") for s in swarm.services.list()):
        pytest.skip(f"a stack named {STACK} runs on this dockerd; the install test leaves it be")
    if any(s.name in SECRETS for s in swarm.secrets.list()):
        pytest.skip("swarmbot's secrets exist on this dockerd; the install test leaves them be")


@pytest.fixture(scope="module")
def deployed(
    image: str, workdir: Path, swarm: docker.DockerClient, run_id: str, synapse: Synapse
) -> Iterator[Deployed]:
    _clean_leftovers(swarm)
    node = swarm.nodes.list(filters={"role": "manager"})[0]
    labelled = "swarmbot.redis" in (node.attrs["Spec"].get("Labels") or {})
    try:
        bot = synapse.register(f"{run_id}-bot")
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
        stacks = workdir / "container-stacks"
        stacks.mkdir()
        env = {
            "SRC": str(ROOT),
            "STACKS": str(stacks),
            "IMAGE": image,
            "REDIS_IMAGE": REDIS_IMAGE,
            "HOMESERVER": synapse.url,
            "BOT_USER": bot.user_id.split(":")[0].lstrip("@"),
            "BOT_PASSWORD": bot.password,
        }

        # docs/OPERATING.md, steps 2 to 6, as written.
        run_install_step("stack-files", env, ROOT)
        run_install_step("host-network", env, ROOT)
        LEFTOVERS.parent.mkdir(exist_ok=True)
        run_install_step("secrets", env, ROOT)
        LEFTOVERS.write_text(
            " ".join(f"secret:{s.id}" for s in swarm.secrets.list() if s.name in SECRETS)
        )
        # Step 5's edit, as an operator makes it; then the test machine's own differences.
        (stacks / "config/swarmbot.toml").write_text(
            container_config(synapse, bot, alice, **values)
        )
        _test_machine_override(stacks / "swarmbot.override.yaml", stacks, ports["redis"])
        (stacks / f"{run_id}-app.yaml").write_text(stack_yaml({"web": {}}))
        run_install_step("check-config", env, ROOT)
        run_install_step("deploy", env, ROOT)
        wait_until(
            lambda: (
                alice.membership(room, bot.user_id) == "join"
                and alice.membership(notices, bot.user_id) == "join"
            ),
            120,
            "the containerised bot to join its rooms",
        )
        wait_until(lambda: _all_running(swarm, STACK), 120, "the stack's tasks to be healthy")
        yield Deployed(synapse, stacks, STACK, alice, bot.user_id, room, notices, ports, env)
    finally:
        remove_stacks(swarm, STACK)
        remove_stacks(swarm, f"{run_id}-app")
        wait_until(
            lambda: not [s for s in swarm.services.list() if s.name.startswith(f"{STACK}_")],
            60,
            "the bot's stack to go",
        )
        for secret in [s for s in swarm.secrets.list() if s.name in SECRETS]:
            wait_until(lambda s=secret: removed(s), 60, "the secret to be free")
        # The stack's volumes (Redis's data, the worker's ledger): swarmbot never removes a
        # volume, so the test removes its own, once no container holds them.
        for volume in swarm.volumes.list(filters={"label": f"com.docker.stack.namespace={STACK}"}):
            wait_until(lambda v=volume: removed(v), 60, "the stack's volume to be free")
        LEFTOVERS.unlink(missing_ok=True)
        if not labelled:
            spec = swarm.nodes.get(node.id).attrs["Spec"]
            spec.get("Labels", {}).pop("swarmbot.redis", None)
            swarm.nodes.get(node.id).update(spec)


def _test_machine_override(path: Path, stacks: Path, redis_port: int) -> None:
    """What differs on a test machine from an operator's, on top of the docs' override:
    Redis on a free port, health checks every 2 s, and the stack files where they are."""
    doc = yaml.safe_load(path.read_text())
    services = doc["services"]
    command = services["redis"]["command"]
    command[command.index("--port") + 1] = str(redis_port)
    for name in ("bot", "worker"):
        services[name]["environment"]["SWARMBOT_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        services[name]["healthcheck"] = {"interval": "2s", "start_period": "60s"}
    services["worker"]["volumes"] = [f"{stacks}:/srv/swarmbot/stacks:ro"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _all_running(swarm: docker.DockerClient, stack: str) -> bool:
    """Every service of the stack has all its tasks running (with a HEALTHCHECK: healthy)."""
    services = swarm.api.services(
        filters={"label": f"com.docker.stack.namespace={stack}"}, status=True
    )
    return len(services) == 3 and all(
        s["ServiceStatus"]["RunningTasks"] == s["ServiceStatus"]["DesiredTasks"] for s in services
    )


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
