"""The tests' own multi-node swarm (scripts/test-cluster.sh): one manager and two workers,
each a dockerd in its own network namespace with its own hostname, and a registry every
node pulls from. Never the user's dockerd: its sockets are files under /run."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker

from bot.chat.adapters.slack_render import unescape
from tests.harness import ROOT, BotEnv, wait_until
from tests.slack_fake import FakeSlack, bot_config, running_fake

BASE = Path("/run/swarmbot-test-clusters")
DOCKER = shutil.which("docker") or "docker"


class Cluster:
    def __init__(self, name: str, workers: int = 2, managers: int = 1) -> None:
        self.dir = BASE / name
        self.workers, self.managers = workers, managers
        self.info: dict[str, str] = {}

    def start(self) -> None:
        proc = subprocess.run(
            ["bash", str(ROOT / "scripts/test-cluster.sh"), "up", str(self.dir),
             str(self.workers), str(self.managers)],
            env={**os.environ, "CLUSTER_OWNER": str(os.getpid())},
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            self.stop()
            raise AssertionError(f"the test cluster did not start:\n{proc.stderr[-3000:]}")
        self.info = dict(line.split("=", 1) for line in proc.stdout.split("\n") if "=" in line)

    def stop(self) -> None:
        subprocess.run(
            ["bash", str(ROOT / "scripts/test-cluster.sh"), "down", str(self.dir)],
            capture_output=True, timeout=180, check=False,
        )  # fmt: skip

    @property
    def nodes(self) -> list[str]:
        return self.info["NODES"].split()

    @property
    def registry(self) -> str:
        return self.info["REGISTRY"]

    def socket(self, node: str = "") -> str:
        return self.info[f"SOCKET_{node or self.info['MANAGER']}"]

    def client(self, node: str = "") -> docker.DockerClient:
        return docker.DockerClient(base_url=f"unix://{self.socket(node)}", version="1.41")

    def env(self) -> dict[str, str]:
        """For a worker (and its docker CLI) that manages this swarm."""
        return {"DOCKER_HOST": f"unix://{self.socket()}"}

    def docker(self, *args: str, node: str = "", cwd: Path | None = None) -> str:
        proc = subprocess.run(
            [DOCKER, "-H", f"unix://{self.socket(node)}", *args],
            capture_output=True, text=True, timeout=300, check=False, cwd=cwd,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
        )  # fmt: skip
        assert proc.returncode == 0, f"docker {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    def push_test_image(self, tag: str = "1") -> str:
        """The busybox test image, built on the manager and pushed to the registry: every
        node pulls it from there, by digest."""
        image = f"{self.registry}/swarmbot-test/busybox:{tag}"
        with tempfile.TemporaryDirectory() as ctx:
            shutil.copy("/bin/busybox", Path(ctx) / "busybox")
            (Path(ctx) / "Dockerfile").write_text(
                "FROM scratch\nCOPY busybox /bin/busybox\n"
                'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
                'RUN ["/bin/mkdir", "-p", "/tmp"]\n'
                f'LABEL swarmbot-test.tag="{tag}"\n'
            )
            self.docker("build", "-q", "-t", image, ctx)
        self.docker("push", "-q", image)
        return image

    def _script(self, *args: str) -> None:
        proc = subprocess.run(
            ["bash", str(ROOT / "scripts/test-cluster.sh"), *args],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr

    def kill_node(self, node: str) -> None:
        """A machine crash: every process of the node (dockerd, containerd, its
        containers) SIGKILLed. Managers mark it down after its heartbeats stop (about
        10-15 s) and move its tasks."""
        self._script("kill-node", str(self.dir), node)

    def stop_node(self, node: str) -> None:
        """The node's dockerd stopped cleanly (SIGTERM), and gone."""
        self._script("stop-node", str(self.dir), node)

    def start_node(self, node: str) -> None:
        """The node's dockerd again (after a crash or a stop); it rejoins the swarm."""
        self._script("start-node", str(self.dir), node)
        watcher = next((n for n in self.nodes if n.startswith("manager") and n != node), node)

        def ready() -> bool:
            try:
                nodes = self.client(watcher).nodes.list()
            except docker.errors.APIError:
                return False  # a lone manager answers before its raft is back
            return any(
                n.attrs["Description"]["Hostname"] == node
                and n.attrs["Status"]["State"] == "ready"
                for n in nodes
            )

        wait_until(ready, 90, f"{node} to be ready again")

    def freeze_node(self, node: str, frozen: bool = True) -> None:
        """Every process of the node stopped (SIGSTOP): a machine that hangs, whose
        connections neither answer nor close; ``frozen=False`` lets it run on (SIGCONT)."""
        ns = (self.dir / node / "netns").read_text().strip()
        pids = subprocess.run(
            ["ip", "netns", "pids", ns], capture_output=True, text=True, check=True
        ).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGSTOP if frozen else signal.SIGCONT)

    def any_manager_but(self, node: str) -> str:
        return next(n for n in self.nodes if n.startswith("manager") and n != node)

    def load_image(self, image: str, name: str) -> str:
        """An image of the host's dockerd, pushed to the cluster's registry as ``name``."""
        ref = f"{self.registry}/{name}"
        saved = subprocess.Popen([DOCKER, "save", image], stdout=subprocess.PIPE)
        subprocess.run(
            [DOCKER, "-H", f"unix://{self.socket()}", "load", "-q"],
            stdin=saved.stdout, capture_output=True, timeout=300, check=True,
        )  # fmt: skip
        assert saved.wait(60) == 0
        self.docker("tag", image, ref)
        self.docker("push", "-q", ref)
        return ref

    def label(self, node: str, **labels: str) -> None:
        client = self.client()
        found = client.nodes.list(filters={"name": node})
        target = next(n for n in found if n.attrs["Description"]["Hostname"] == node)
        spec = target.attrs["Spec"]
        spec.setdefault("Labels", {}).update(labels)
        target.update(spec)

    def running_on(self, service: str) -> list[str]:
        """The hostnames of the nodes running ``service``'s tasks."""
        client = self.client()
        hosts = {n.id: n.attrs["Description"]["Hostname"] for n in client.nodes.list()}
        tasks = client.services.get(service).tasks(filters={"desired-state": "running"})
        return sorted(hosts[t["NodeID"]] for t in tasks if t["Status"]["State"] == "running")

    def wait_running(self, service: str, count: int, timeout: float = 60) -> list[str]:
        return wait_until(
            lambda: (lambda r: r if len(r) == count else None)(self.running_on(service)),
            timeout,
            f"{count} running tasks of {service}",
        )


NOTICES = "C0NOTICE1"  # the Slack fake's channel for a cluster bot's notices


class ClusterBot(BotEnv):
    """A console, and a Slack bot (the fake) whose notices channel gets every notice, with
    the worker managing a test cluster: what the node and dockerd tests talk to."""

    fake: FakeSlack
    cluster: Cluster

    def notices(self, about: str) -> list[str]:
        """Notices that mention ``about``, as a person reads them."""
        texts = [unescape(m["text"]) for m in self.fake.messages if m["channel"] == NOTICES]
        return [t for t in texts if about in t]

    def settle(self) -> None:
        """Two more looks at the swarm by the watcher: what was to be told has been."""
        key = f"{self.prefix}:notice:refreshes"
        start = int(self.redis().get(key) or 0)
        wait_until(lambda: int(self.redis().get(key) or 0) >= start + 2, 60, "two looks")


@contextmanager
def cluster_bot(
    cluster: Cluster, workdir: Path, redis_url: str, name: str, deadline: float
) -> Iterator[ClusterBot]:
    """A started ClusterBot, its worker on ``cluster``, after the watcher's first look."""
    with running_fake() as fake:
        env = ClusterBot(
            workdir,
            redis_url,
            name,
            resolve_image="always",
            deadline=deadline,
            adapters=("slack",),
            extra_roles=bot_config(fake, notices=NOTICES)
            + f"""
            [notices]
            quiet_seconds = 1
            poll_seconds = 2
            [[notices.route]]
            stacks = ["*"]
            slack = ["{NOTICES}"]
            """,
        )
        env.fake, env.cluster = fake, cluster
        env.start_worker(env=cluster.env())
        env.start_bot()
        try:
            wait_until(lambda: env.redis().get(f"{env.prefix}:notice:refreshes"), 30, "a look")
            yield env
        finally:
            env.stop_bot()
            env.stop_worker()
