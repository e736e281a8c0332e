"""swarmbot's own stack survives losing a manager: on a swarm of three managers, the
manager that runs the worker's task crashes (every process of it killed) while a job is
in flight; swarm starts the worker on another manager, which takes the job over and
answers it exactly once, and the change it made is made once.

The stack is stacks/swarmbot.yaml as shipped with the host-network override the docs
ship, plus what differs on this test swarm: Redis listens on its node's bridge address
(reachable from every node) and the worker never runs beside it (so the crash takes the
worker, not the queue), no bot (the test talks through the console), fast health checks.
Trials: ``FAULT_TRIALS`` (1 in `make test`, 20 in `make faults`)."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import yaml

from tests.cluster import Cluster
from tests.harness import (
    REDIS_TEST_IMAGE,
    ROOT,
    BotEnv,
    stack_yaml,
    swarmbot_test_image,
    wait_until,
)

pytestmark = pytest.mark.faults

# Once in `make test` (each trial crashes a manager: about 30 s), FAULT_TRIALS in `make faults`.
TRIALS = range(int(os.environ.get("FAULT_TRIALS", "1")))
SLOW = {"update_config": {"monitor": "3s"}}


class Swarm3:
    def __init__(self, cluster: Cluster, env: BotEnv, service: str) -> None:
        self.cluster, self.env, self.service = cluster, env, service

    def client(self, avoid: str = "") -> docker.DockerClient:
        alive = [n for n in self.cluster.nodes if n != avoid]
        return self.cluster.client(alive[0])

    def worker_node(self, avoid: str = "") -> str:
        """The manager whose worker task runs (and is not ``avoid``, a crashed one)."""
        client = self.client(avoid)
        hosts = {n.id: n.attrs["Description"]["Hostname"] for n in client.nodes.list()}
        tasks = client.services.get("swarmbot_worker").tasks(filters={"desired-state": "running"})
        running = [hosts[t["NodeID"]] for t in tasks if t["Status"]["State"] == "running"]
        return running[0] if len(running) == 1 and running[0] != avoid else ""

    def force_count(self, avoid: str = "") -> int:
        spec = self.client(avoid).services.get(self.service).attrs["Spec"]
        return int(spec["TaskTemplate"].get("ForceUpdate", 0))


@pytest.fixture(scope="module")
def three(
    run_id: str, workdir: Path, redis_url: str, swarm: docker.DockerClient
) -> Iterator[Swarm3]:
    image = swarmbot_test_image()  # shared with the container test
    cluster = Cluster(f"{run_id}-managers", workers=0, managers=3)
    cluster.start()
    try:
        ref = cluster.load_image(image, "swarmbot-test/swarmbot:1")
        redis_ref = cluster.load_image(REDIS_TEST_IMAGE, "swarmbot-test/redis:7")
        busybox = cluster.push_test_image()
        cluster.label("manager3", **{"swarmbot.redis": "true"})
        redis_addr = cluster.info["ADDR_manager3"]
        # The console's side: this env's config names the cluster's Redis; the worker's
        # config (below) shares its prefix and signing secret.
        env = BotEnv(workdir, f"redis://{redis_addr}:6380/0", "manager-loss", deadline=60)
        stacks = env.stacks_dir
        (stacks / "config").mkdir()
        shutil.copy(ROOT / "stacks/swarmbot.yaml", stacks / "swarmbot.yaml")
        override = yaml.safe_load((ROOT / "stacks/swarmbot.host-network.yaml").read_text())
        svc = override["services"]
        command = svc["redis"]["command"]
        # On its node's bridge address, for the other nodes' workers: a private bridge of
        # this test's, so protected mode (loopback only without a password) is off.
        command[command.index("127.0.0.1")] = redis_addr
        command += ["--protected-mode", "no"]
        for name in ("bot", "worker"):
            svc[name]["image"] = ref
            svc[name]["environment"]["SWARMBOT_REDIS_URL"] = f"redis://{redis_addr}:6380/0"
            svc[name]["healthcheck"] = {"interval": "2s", "start_period": "30s"}
        svc["redis"]["image"] = redis_ref
        svc["bot"]["deploy"] = {"replicas": 0}
        svc["worker"]["deploy"]["placement"]["constraints"] = [
            "node.role == manager",
            "node.labels.swarmbot.redis != true",
        ]
        # Every node sees the host's files: each worker gets its own node's Docker socket
        # (a mount source template), never the host's /var/run/docker.sock.
        sockets = cluster.dir / "{{.Node.Hostname}}" / "docker.sock"
        svc["worker"]["volumes"] = [
            f"{stacks}:/srv/swarmbot/stacks:ro",
            {"type": "bind", "source": str(sockets), "target": "/var/run/docker.sock"},
        ]
        (stacks / "swarmbot.override.yaml").write_text(yaml.safe_dump(override))
        (stacks / "config/swarmbot.toml").write_text(
            textwrap.dedent(
                f"""
                [bot]
                stacks_dir = "/srv/swarmbot/stacks"
                [redis]
                prefix = "{env.prefix}"
                [queue]
                worker_timeout_seconds = 4
                [deploy]
                deadline_seconds = 60
                resolve_image = "always"
                [health]
                worker_port = 9102
                [roles.admin]
                users = ["console:admin"]
                commands = ["*"]
                stacks = ["*"]
                [safety]
                rate_limit_per_minute = 10000
                """
            )
        )
        for name, value in (
            ("swarmbot_signing_secret", env.secret),
            ("swarmbot_matrix_token", "unused-" + secrets.token_hex(8)),
        ):
            subprocess.run(
                ["docker", "-H", f"unix://{cluster.socket()}", "secret", "create", name, "-"],
                input=value.encode(), capture_output=True, check=True,
            )  # fmt: skip
        slow = f"{run_id}-slow"
        (stacks / f"{slow}.yaml").write_text(
            # On the Redis node, which no trial crashes: the crash takes the worker, and the
            # job it leaves is a restart whose tasks are all still there to converge.
            stack_yaml(
                {
                    "victim": {
                        "image": busybox,
                        "replicas": 2,
                        "constraints": ["node.labels.swarmbot.redis == true"],
                        **SLOW,
                    }
                }
            )
        )
        cluster.docker(
            "stack", "deploy", "-c", "swarmbot.yaml", "-c", "swarmbot.override.yaml", "swarmbot",
            cwd=stacks,
        )  # fmt: skip
        three = Swarm3(cluster, env, f"{slow}_victim")
        try:
            wait_until(three.worker_node, 120, "the worker to run on a manager")
        except AssertionError as exc:
            ps = cluster.docker("stack", "ps", "--no-trunc", "swarmbot")
            for c in cluster.client().containers.list(all=True):
                health = c.attrs["State"].get("Health") or {}
                ps += f"\n{c.name}: {[h.get('Output') for h in health.get('Log', [])][-2:]}"
            raise AssertionError(f"{exc}\n{ps}") from None
        assert "pong from worker" in env.chat("!ping", timeout=120)
        assert "converged" in env.chat(f"!deploy {slow}", timeout=180)
        yield three
    finally:
        cluster.stop()


def finish(proc: subprocess.Popen[str], timeout: float = 240) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"console exited {proc.returncode}\n{out}\n{err}"
    return out


@pytest.mark.parametrize("trial", TRIALS)
def test_the_manager_running_the_worker_crashes_mid_job(three: Swarm3, trial: int) -> None:
    env, cluster = three.env, three.cluster
    victim = three.service
    text = f"!restart {victim}"
    node = three.worker_node()
    before = three.force_count()
    after = env.last_job().get("id", "0")
    # The answer waits for swarm to notice the crash and start the worker elsewhere: under
    # a full test run's load that took up to two minutes; the console waits for it.
    chat = env.chat_in_background(text, wait=220)

    def under_way() -> dict[str, str] | None:
        job = env.last_job()
        fresh = job.get("text") == text and int(job.get("id", 0)) > int(after or 0)
        return job if fresh and "applied:restart" in job else None

    wait_until(under_way, 60, "the restart to be under way", interval=0.02)
    cluster.kill_node(node)
    try:
        out = finish(chat)
        answers = re.findall(rf"restarted {re.escape(victim)}: \d/\d running", out)
        assert len(answers) == 1, out
        moved_to = wait_until(lambda: three.worker_node(avoid=node), 60, "the worker elsewhere")
        assert moved_to != node
        assert three.force_count(avoid=node) == before + 1, "restarted twice (or never)"
    finally:
        cluster.start_node(node)
