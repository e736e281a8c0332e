"""``!inspect <service>``: what a service is, with every secret masked; against small fakes
of the worker's blocks (tests/fakes.py) and on the real swarm."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from bot.core.operations import JobFailed
from tests.fakes import DEV_ONLY, FakeEngine, FakeTools, run_job, service
from tests.harness import TEST_IMAGE, BotEnv, remove_stacks, removed, wait_until

SECRET = "s3cret-db-password-42"


def inspected(**over: object) -> dict[str, object]:
    mounts = (
        {"Type": "volume", "Source": "dev_data", "Target": "/data"},
        {"Type": "bind", "Source": "/etc/app", "Target": "/conf", "ReadOnly": True},
    )
    svc = service(
        "dev_db",
        mounts=mounts,
        env=("SITE=example.org", f"DB_PASSWORD={SECRET}", "EMPTY="),
        labels={"team": "storage"},
    )
    svc["Endpoint"] = {
        "Spec": {"Ports": [{"PublishedPort": 8080, "TargetPort": 80, "Protocol": "tcp"}]}
    }
    nodes = [
        {"ID": "n1", "Description": {"Hostname": "worker1"}},
        {"ID": "n2", "Description": {"Hostname": "worker2"}},
    ]
    tasks = [{"NodeID": "n2"}, {"NodeID": "n1"}, {"NodeID": "n2"}]
    tools = FakeTools(FakeEngine([svc], task_list=tasks, node_list=nodes))
    answer, _ = run_job(tools, "inspect", **{"service": "db", **over})  # type: ignore[arg-type]
    return dict(answer.data)


@pytest.mark.unit
def test_inspect_masks_every_value_but_public_and_empty_ones() -> None:
    assert inspected()["env"] == [["SITE", "example.org"], ["DB_PASSWORD", "***"], ["EMPTY", ""]]


@pytest.mark.unit
def test_inspect_says_where_a_named_volumes_tasks_ran() -> None:
    assert inspected()["mounts"] == [
        ["volume", "dev_data", "/data", "rw", "worker1, worker2"],
        ["bind", "/etc/app", "/conf", "ro", "-"],
    ]


@pytest.mark.unit
def test_inspect_names_the_pinned_digest() -> None:
    data = inspected()
    assert data["image"] == "web:1"
    assert data["digest"] == "sha256:" + "a" * 64


@pytest.mark.unit
def test_inspect_reads_placement_ports_policy_and_labels() -> None:
    data = inspected()
    assert data["constraints"] == ["node.role == worker"]
    assert data["ports"] == ["8080:80/tcp (ingress)"]
    assert data["update"] == "parallelism=1, delay=5s, order=start-first"
    assert ["team", "storage"] in data["labels"]  # type: ignore[operator]


@pytest.mark.unit
def test_inspect_of_a_service_outside_the_requesters_stacks_is_no_service() -> None:
    tools = FakeTools(FakeEngine([service("ops_db")]))
    with pytest.raises(JobFailed, match="no service `db`"):
        run_job(tools, "inspect", DEV_ONLY, service="db")


@pytest.fixture(scope="module")
def env(workdir: Path, redis_url: str, run_id: str) -> Iterator[BotEnv]:
    env = BotEnv(workdir, redis_url, "inspect", variables={"DB_PW": SECRET})
    env.start_in_process()
    yield env


@pytest.mark.swarm
def test_inspect_on_the_real_swarm(env: BotEnv, run_id: str, swarm: docker.DockerClient) -> None:
    stack = f"{run_id}-inspect"
    (env.stacks_dir / f"{stack}.yaml").write_text(
        f"""
version: "3.8"
networks: {{hostnet: {{external: true, name: host}}}}
volumes: {{data: {{}}}}
services:
  db:
    image: {TEST_IMAGE}
    command: ["sleep", "3600"]
    init: true
    networks: [hostnet]
    stop_grace_period: 1s
    environment:
      SITE: "${{DOMAIN}}"
      DB_PASSWORD: "${{DB_PW}}"
    volumes: ["data:/var/lib/data"]
    deploy:
      endpoint_mode: dnsrr
      labels: {{team: storage}}
      placement: {{constraints: ["node.role == manager"]}}
      update_config: {{parallelism: 1, delay: 2s, order: stop-first, monitor: 1s}}
"""
    )
    assert "converged" in env.chat(f"!deploy {stack}")
    out = env.chat(f"!inspect {stack}_db")
    host = swarm.nodes.list()[0].attrs["Description"]["Hostname"]
    assert f"{stack}_db (stack {stack})" in out, out
    # The test config deploys with resolve_image = "never": no digest is pinned, and the
    # answer says so (a pinned one is read in the handler test above).
    assert f"image: {TEST_IMAGE} (no pinned digest)" in out, out
    env_line = next(line for line in out.splitlines() if line.startswith("env: "))
    assert "SITE=test.localhost" in env_line, out  # DOMAIN is public
    assert "DB_PASSWORD=***" in env_line, out
    assert re.search(rf"volume\s+{stack}_data\s+/var/lib/data\s+rw\s+{host}", out), out
    assert "mode: 1 replica\n" in out, out
    assert "constraints: node.role == manager" in out
    assert "ports: none published" in out
    assert "order=stop-first" in out and "delay=2s" in out
    assert "team=storage" in out
    assert SECRET not in out


@pytest.fixture(scope="module", autouse=True)
def _cleanup(swarm: docker.DockerClient, run_id: str) -> Iterator[None]:
    """The bot never removes a volume; the test removes the one it made."""
    yield
    stack = f"{run_id}-inspect"
    remove_stacks(swarm, stack)
    for volume in swarm.volumes.list(filters={"name": f"{stack}_data"}):
        wait_until(lambda v=volume: removed(v), 60, "the test volume to be free")
