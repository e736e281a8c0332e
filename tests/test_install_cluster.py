"""The install, as docs/OPERATING.md writes it, onto the tests' multi-node swarm (a manager
and a worker, each its own dockerd) through the manager's own Docker socket, not the host's
dockerd: the shell commands of the blocks marked ``tested``, with ``DOCKER_HOST`` on the
manager. The probe behind it: a worker that mounted the host's socket managed another swarm
on the same host, healthy and silent. Here the worker's socket is the manager's (the
override the docs describe), and ``!ping`` in the room names that node and that swarm."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cluster import Cluster
from tests.harness import REDIS_TEST_IMAGE, ROOT, free_port, swarmbot_test_image, wait_until
from tests.synapse import Synapse, wait_for_reply
from tests.test_container import container_config, run_install_step

pytestmark = pytest.mark.swarm


def forward(listen: tuple[str, int], to: tuple[str, int], stop: threading.Event) -> None:
    """A TCP relay from ``listen`` (the cluster bridge's host address) to ``to`` (Synapse on
    the host's loopback): the bridge is the tests' own private subnet."""
    server = socket.create_server(listen)
    server.settimeout(0.5)

    def pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    while not stop.is_set():
        try:
            client, _ = server.accept()
        except TimeoutError:
            continue
        upstream = socket.create_connection(to)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=pipe, args=(a, b), daemon=True).start()
    server.close()


def all_running(cluster: Cluster) -> bool:
    services = cluster.client().api.services(
        filters={"label": "com.docker.stack.namespace=swarmbot"}, status=True
    )
    return len(services) == 3 and all(
        s["ServiceStatus"]["RunningTasks"] == s["ServiceStatus"]["DesiredTasks"] for s in services
    )


def what_runs(cluster: Cluster) -> str:
    """For a failure's message: the stack's tasks, and the last log lines of its containers."""
    out = cluster.docker("stack", "ps", "--no-trunc", "swarmbot")
    for container in cluster.client().containers.list(all=True):
        logs = container.logs(tail=15).decode(errors="replace")
        out += f"\n--- {container.name} ({container.status}):\n{logs}"
    return out


@pytest.fixture(scope="module")
def cluster(run_id: str) -> Iterator[Cluster]:
    c = Cluster(f"{run_id}-install", workers=1)
    c.start()
    try:
        yield c
    finally:
        c.stop()


def test_the_install_steps_onto_a_multi_node_swarm_through_the_managers_socket(
    cluster: Cluster, workdir: Path, synapse: Synapse, run_id: str
) -> None:
    gateway = cluster.registry.split(":")[0]
    port = free_port()
    stop = threading.Event()
    relay = threading.Thread(
        target=forward,
        args=((gateway, port), ("127.0.0.1", int(synapse.url.rsplit(":", 1)[1])), stop),
        daemon=True,
    )
    relay.start()
    homeserver = f"http://{gateway}:{port}"
    try:
        image = cluster.load_image(swarmbot_test_image(), "swarmbot-test/swarmbot:1")
        redis_image = cluster.load_image(REDIS_TEST_IMAGE, "swarmbot-test/redis:7")
        bot = synapse.register(f"{run_id}-cbot")
        alice = synapse.register("cluster-alice")
        room = alice.create_room(invite=[bot.user_id])
        notices = alice.create_room(invite=[bot.user_id])
        stacks = workdir / "cluster-install-stacks"
        stacks.mkdir()
        env = {
            "SRC": str(ROOT),
            "STACKS": str(stacks),
            "IMAGE": image,
            "REDIS_IMAGE": redis_image,
            "HOMESERVER": homeserver,
            "BOT_USER": bot.user_id.split(":")[0].lstrip("@"),
            "BOT_PASSWORD": bot.password,
            "DOCKER_HOST": f"unix://{cluster.socket()}",  # the manager's own socket
        }
        # docs/OPERATING.md, steps 2 to 6, as written, against the manager.
        run_install_step("stack-files", env, ROOT)
        run_install_step("host-network", env, ROOT)
        run_install_step("secrets", env, ROOT)
        values = {"prefix": run_id, "bot_port": 9101, "worker_port": 9102}
        config = container_config(synapse, bot, alice, room=room, notices=notices, **values)
        (stacks / "config/swarmbot.toml").write_text(config.replace(synapse.url, homeserver))
        # The override the docs describe for a dockerd that listens elsewhere: the worker
        # mounts this manager's socket (the host's /var/run/docker.sock is another swarm).
        override = stacks / "swarmbot.override.yaml"
        doc = yaml.safe_load(override.read_text())
        doc["services"]["worker"]["volumes"] = [
            f"{stacks}:/srv/swarmbot/stacks:ro",
            {"type": "bind", "source": cluster.socket(), "target": "/var/run/docker.sock"},
        ]
        for name in ("bot", "worker"):
            doc["services"][name]["healthcheck"] = {"interval": "2s", "start_period": "60s"}
        override.write_text(yaml.safe_dump(doc, sort_keys=False))
        run_install_step("check-config", env, ROOT)
        run_install_step("deploy", env, ROOT)
        wait_until(lambda: alice.membership(room, bot.user_id) == "join", 180, "the bot to join")
        try:  # every task running (and healthy), as test_container waits for them
            wait_until(lambda: all_running(cluster), 180, "the stack's tasks to be healthy")
            command = alice.say(room, "!ping")
            reply = wait_for_reply(alice, room, command, "pong from worker", timeout=120)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{what_runs(cluster)}") from None
        said = reply["content"]["body"]
        swarm_id = cluster.client().info()["Swarm"]["Cluster"]["ID"]
        assert f"swarm {swarm_id[:12]}, node manager1 (manager)" in said, said
        assert re.search(r"daemon unix:///var/run/docker.sock", said), said
        health = run_install_step("health", env, ROOT)
        assert "swarmbot_worker" in health, health
    finally:
        stop.set()
        relay.join(5)
