"""Nodes on a real multi-node swarm (tests/cluster.py: a manager and two workers, each its
own dockerd, and a registry): `!nodes`, placement by tier labels, `!ps` with node names,
deploys pulled by digest, and `!drain` / `!pause` / `!activate` with the drain's pre-check."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import yaml

from tests.cluster import Cluster, ClusterBot, cluster_bot
from tests.harness import BotEnv, stack_yaml, wait_until

pytestmark = pytest.mark.swarm


@pytest.fixture(scope="module")
def cluster(run_id: str) -> Iterator[Cluster]:
    c = Cluster(f"{run_id}-nodes")
    c.start()
    try:
        c.label("worker1", tier="small")
        c.label("worker2", tier="big")
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def image(cluster: Cluster) -> str:
    return cluster.push_test_image()


@pytest.fixture(scope="module")
def ops(cluster: Cluster, workdir: Path, redis_url: str) -> Iterator[ClusterBot]:
    with cluster_bot(cluster, workdir, redis_url, "nodes", deadline=60) as env:
        yield env


def confirmed(env: BotEnv, command: str) -> str:
    """Ask, then confirm: the transcript of the confirmed job."""
    asked = env.chat(command)
    code = re.search(r"!confirm ([A-Z0-9]{4})", asked)
    assert code, asked
    return env.chat(f"!confirm {code.group(1)}")


def remove(cluster: Cluster, stack: str) -> None:
    """A test's stack off the swarm, so the next test's drain judges only its own."""
    cluster.docker("stack", "rm", stack)
    wait_until(
        lambda: (
            not cluster.client().containers.list(
                filters={"label": f"com.docker.stack.namespace={stack}"}
            )
            and not any(
                cluster.client(n).containers.list(
                    filters={"label": f"com.docker.stack.namespace={stack}"}
                )
                for n in cluster.nodes
            )
        ),
        60,
        f"{stack}'s tasks to stop",
    )


def availability(cluster: Cluster, node: str) -> str:
    found = cluster.client().nodes.list(filters={"name": node})
    return next(n for n in found if n.attrs["Description"]["Hostname"] == node).attrs["Spec"][
        "Availability"
    ]


def test_nodes_lists_every_node_with_role_labels_and_tasks(
    ops: ClusterBot, cluster: Cluster, image: str, run_id: str
) -> None:
    stack = ops.add_stack(f"{run_id}-spread", {"web": {"image": image, "replicas": 3}})
    assert f"deployed {stack}" in ops.chat(f"!deploy {stack}")
    out = ops.chat("!nodes")
    assert "3 nodes, all ready and active" in out, out
    rows = {
        line.split()[0]: line
        for line in out.splitlines()
        if line.startswith(("manager", "worker"))
    }
    assert re.search(r"manager1\s+manager \(leader\)\s+active\s+ready\s+20\.10", rows["manager1"])
    assert "tier=small" in rows["worker1"] and "tier=big" in rows["worker2"], out
    assert re.search(r"worker\s+active\s+ready", rows["worker2"]), out
    total = sum(int(re.search(r"\s(\d+)\s+[\d.]+/", r).group(1)) for r in rows.values())
    assert total >= 3, out


def test_tier_labels_place_services_and_deploys_pull_by_digest(
    ops: ClusterBot, cluster: Cluster, image: str, run_id: str
) -> None:
    stack = ops.add_stack(
        f"{run_id}-tiers",
        {
            "big": {"image": image, "replicas": 2, "constraints": ["node.labels.tier == big"]},
            "small": {"image": image, "replicas": 2, "constraints": ["node.labels.tier == small"]},
        },
    )
    assert f"deployed {stack}: 2 services converged" in ops.chat(f"!deploy {stack}")
    assert cluster.running_on(f"{stack}_big") == ["worker2", "worker2"]
    assert cluster.running_on(f"{stack}_small") == ["worker1", "worker1"]
    spec = cluster.client().services.get(f"{stack}_big").attrs["Spec"]
    pinned = spec["TaskTemplate"]["ContainerSpec"]["Image"]
    assert pinned.startswith(f"{image}@sha256:"), pinned
    out = ops.chat(f"!ps {stack}_small")
    assert len(re.findall(r"\sworker1\s+running\s+running", out)) == 2, out
    remove(cluster, stack)


def test_drain_that_would_strand_a_service_is_refused_and_changes_nothing(
    ops: ClusterBot, cluster: Cluster, image: str, run_id: str
) -> None:
    stack = ops.add_stack(
        f"{run_id}-pinned",
        {"db": {"image": image, "constraints": ["node.labels.tier == big"]}},
    )
    assert f"deployed {stack}" in ops.chat(f"!deploy {stack}")
    out = confirmed(ops, "!drain worker2")
    assert "worker2 not drained: 1 service would lose tasks" in out, out
    assert re.search(
        rf"{stack}_db\s+1\s+would lose placement: no other node for node.labels.tier == big", out
    ), out
    assert "!drain worker2 --force drains it anyway" in out
    assert availability(cluster, "worker2") == "active"
    assert cluster.running_on(f"{stack}_db") == ["worker2"]
    remove(cluster, stack)


def test_a_forced_drain_says_a_stranded_service_is_pending_not_moved(
    ops: ClusterBot, cluster: Cluster, image: str, run_id: str
) -> None:
    """The probe: with --force, a service no other node can take was said "moved", with
    nowhere after it. Now: NOT PLACED, swarm's reason, in the answer and the notice."""
    stack = ops.add_stack(
        f"{run_id}-stranded",
        {"db": {"image": image, "constraints": ["node.labels.tier == big"]}},
    )
    assert f"deployed {stack}" in ops.chat(f"!deploy {stack}")
    asked = ops.chat("!drain worker2 --force")
    assert "a service that no other node can take stays pending" in asked, asked
    code = re.search(r"!confirm ([A-Z0-9]{4})", asked)
    assert code, asked
    try:
        out = ops.chat(f"!confirm {code.group(1)}")
        assert re.search(r"worker2 drained: \d+ services? moved, 1 could not be placed", out), out
        row = next(line for line in out.splitlines() if f"{stack}_db" in line)
        assert "NOT PLACED" in row and "no suitable node" in row, out
        assert " moved " not in row, out
        notice = wait_until(lambda: ops.notices("node worker2 drained"), 30, "the notice")[0]
        assert f"{stack}_db: NOT PLACED: pending: no suitable node" in notice, notice
        assert "moved to \n" not in notice + "\n", notice
    finally:
        ops.chat("!activate worker2")
        remove(cluster, stack)


def test_drain_moves_the_tasks_and_says_where_then_activate(
    ops: ClusterBot, cluster: Cluster, image: str, run_id: str
) -> None:
    stack = ops.add_stack(f"{run_id}-movable", {"web": {"image": image, "replicas": 3}})
    assert f"deployed {stack}" in ops.chat(f"!deploy {stack}")
    ops.chat(f"!scale {stack}_web 3")
    on_worker1 = "worker1" in cluster.running_on(f"{stack}_web")
    out = confirmed(ops, "!drain worker1")
    assert "worker1 drained:" in out and "could not be placed" not in out, out
    assert availability(cluster, "worker1") == "drain"
    hosts = cluster.wait_running(f"{stack}_web", 3)
    assert "worker1" not in hosts, hosts
    if on_worker1:
        row = next(line for line in out.splitlines() if f"{stack}_web" in line)
        assert "moved" in row and "worker1" not in row.split("moved", 1)[1], out
    # Already drained: said so, nothing done.
    assert "worker1 was already drained; nothing changed" in confirmed(ops, "!drain worker1")
    out = ops.chat("!activate worker1")
    assert "worker1 active: it takes new tasks again" in out, out
    assert availability(cluster, "worker1") == "active"


def test_label_a_node_and_check_sees_it_at_once(
    ops: ClusterBot, cluster: Cluster, image: str, run_id: str
) -> None:
    stack = ops.add_stack(
        f"{run_id}-zoned", {"app": {"image": image, "constraints": ["node.labels.zone == a"]}}
    )
    assert "no node satisfies node.labels.zone == a" in ops.chat(f"!check {stack}")
    asked = ops.chat("!label worker1 zone=a")
    assert "this sets label zone=a on node worker1" in asked, asked
    code = re.search(r"!confirm ([A-Z0-9]{4})", asked)
    assert code, asked
    out = ops.chat(f"!confirm {code.group(1)}")
    assert "worker1: labelled zone=a" in out and "zone=a" in out, out
    assert "no node satisfies" not in ops.chat(f"!check {stack}")
    notice = wait_until(lambda: ops.notices("node worker1 labelled zone=a"), 30, "the notice")
    assert "by console:admin via !label worker1 zone=a" in notice[0], notice
    out = confirmed(ops, "!label worker1 -zone")
    assert "worker1: label zone removed" in out, out
    assert "no node satisfies node.labels.zone == a" in ops.chat(f"!check {stack}")
    labels = cluster.client().nodes.get("worker1").attrs["Spec"]["Labels"]
    assert "zone" not in labels and labels.get("tier") == "small", labels


def test_pause_keeps_tasks_and_check_names_the_node_that_cannot_take_them(
    ops: ClusterBot, cluster: Cluster, image: str, run_id: str
) -> None:
    out = ops.chat("!pause worker1")
    assert "worker1 paused: it takes no new tasks" in out, out
    try:
        stack = ops.add_stack(
            f"{run_id}-onsmall",
            {"svc": {"image": image, "constraints": ["node.labels.tier == small"]}},
        )
        out = ops.chat(f"!check {stack}")
        assert (
            "only worker1 (paused) satisfies node.labels.tier == small, and takes no tasks now"
            in out
        ), out
        stack = ops.add_stack(
            f"{run_id}-nowhere",
            {"svc": {"image": image, "constraints": ["node.labels.tier == huge"]}},
        )
        assert "no node satisfies node.labels.tier == huge" in ops.chat(f"!check {stack}")
    finally:
        ops.chat("!activate worker1")
    wait_until(lambda: availability(cluster, "worker1") == "active", 10, "worker1 active")


def test_node_changes_are_told_once_each_by_the_bot_or_from_outside(
    ops: ClusterBot, cluster: Cluster
) -> None:
    """A drain and an activate by the bot are told by its job (who did it), never also as
    outside changes; the same by hand are told once as changes outside the bot."""
    before = len(ops.notices("node "))
    confirmed(ops, "!drain worker1")
    ops.chat("!activate worker1")
    wait_until(lambda: ops.notices("node worker1 activated by"), 30, "the activate notice")
    ops.settle()
    told = ops.notices("node ")[before:]
    assert len(told) == 2, told
    assert told[0].startswith("node worker1 drained by console:admin via !drain"), told
    assert told[1].startswith("node worker1 activated by console:admin via !activate"), told

    cluster.docker("node", "update", "--availability", "pause", "worker1")
    wait_until(lambda: ops.notices("node worker1 paused outside the bot"), 30, "the notice")
    cluster.docker("node", "update", "--availability", "active", "worker1")
    wait_until(lambda: ops.notices("node worker1 activated outside the bot"), 30, "the notice")
    ops.settle()
    assert len(ops.notices("node worker1 paused outside the bot")) == 1
    assert len(ops.notices("node worker1 activated outside the bot")) == 1


def test_a_task_no_node_can_take_is_told_once_with_the_reason(
    ops: ClusterBot, cluster: Cluster, image: str, run_id: str
) -> None:
    """worker1, the only small-tier node, is drained by hand: its service's task has
    nowhere to go. One notice says so, with swarm's reason; one says who drained it."""
    stack = ops.add_stack(
        f"{run_id}-stranded",
        {"job": {"image": image, "constraints": ["node.labels.tier == small"]}},
    )
    assert f"deployed {stack}" in ops.chat(f"!deploy {stack}")
    ops.settle()
    cluster.docker("node", "update", "--availability", "drain", "worker1")
    try:
        told = wait_until(lambda: ops.notices(f"{stack}_job is unhealthy"), 60, "the notice")
        assert "no suitable node" in told[0], told
        ops.settle()
        assert len(ops.notices(f"{stack}_job is unhealthy")) == 1, ops.notices(stack)
        assert len(ops.notices("node worker1 drained outside the bot")) == 1
    finally:
        cluster.docker("node", "update", "--availability", "active", "worker1")
        remove(cluster, stack)


def data_file(cluster: Cluster, node: str, volume: str) -> str:
    """What the volume ``volume`` on ``node`` holds in ``rows`` ("" if no such file)."""
    path = cluster.client(node).volumes.get(volume).attrs["Mountpoint"]
    try:
        return (Path(path) / "rows").read_text().strip()
    except OSError:
        return ""


def test_a_service_drained_away_from_its_volume_is_told_once(
    ops: ClusterBot, cluster: Cluster, image: str, run_id: str
) -> None:
    """A stateful service on a local volume, not pinned: !volumes says where its data is;
    !drain of that node is refused, naming the volume; forced, the answer says the service
    now runs away from its data, and one notice that it started where its volume is empty."""
    stack = f"{run_id}-stateful"
    # It writes its data: a file in its volume, where it first runs.
    writes = ["sh", "-c", "test -f /data/rows || date +%s%N > /data/rows; sleep 3600"]
    doc = yaml.safe_load(
        stack_yaml(
            {"db": {"image": image, "constraints": ["node.role == worker"], "command": writes}}
        )
    )
    doc["services"]["db"]["volumes"] = ["data:/data"]
    doc["volumes"] = {"data": {}}
    (ops.stacks_dir / f"{stack}.yaml").write_text(yaml.safe_dump(doc))
    assert f"deployed {stack}" in ops.chat(f"!deploy {stack}")
    [first] = cluster.wait_running(f"{stack}_db", 1)
    written = wait_until(lambda: data_file(cluster, first, f"{stack}_data"), 30, "its data")
    volume = f"{stack}_data"
    out = ops.chat(f"!volumes {stack}")
    assert re.search(rf"{volume}\s+{stack}\s+{stack}_db\s+{first}\s+local\s+no", out), out
    # The worker's record has the data on `first` (it looks every few seconds).
    key = f"{ops.prefix}:volumes"
    wait_until(lambda: first in (ops.redis().hget(key, volume) or ""), 30, "the record")
    check = ops.chat(f"!check {stack}")
    assert f"local volume {volume}, and 2 nodes its constraints allow: its data is on {first}" in (
        check
    ), check
    assert f"pin it (node.hostname == {first}" in check, check
    # A constraint that excludes the data's node: !diff says so, and !deploy refuses.
    text = (ops.stacks_dir / f"{stack}.yaml").read_text()
    (ops.stacks_dir / f"{stack}.yaml").write_text(
        text.replace("node.role == worker", f"node.hostname != {first}")
    )
    leaving = f"moves away from its data: volume {volume} is on {first}"
    assert leaving in ops.chat(f"!diff {stack}")
    refused = ops.chat(f"!deploy {stack}")
    assert f"not deployed: {stack}_db {leaving}" in refused, refused
    assert re.search(r"!confirm [A-Z0-9]{4} deploys it anyway", refused), refused
    assert cluster.running_on(f"{stack}_db") == [first]
    (ops.stacks_dir / f"{stack}.yaml").write_text(text)
    try:
        refused = confirmed(ops, f"!drain {first}")
        assert f"{first} not drained: 1 service would leave its data" in refused, refused
        assert f"would leave its data: volume {volume} is on this node" in refused, refused
        assert cluster.running_on(f"{stack}_db") == [first]
        drained = confirmed(ops, f"!drain {first} --force")
        assert f"now away from their data: {stack}_db (volume {volume})" in drained, drained
        [second] = cluster.wait_running(f"{stack}_db", 1)
        assert second != first
        told = wait_until(
            lambda: ops.notices(f"{stack}_db started on {second}"), 60, "the data notice"
        )
        assert f"where volume {volume} has no data (its data is on {first} since" in told[0]
        assert "it may be running on an empty volume" in told[0]
        # On second its volume was empty: it wrote its data anew. The data stays on first.
        anew = wait_until(lambda: data_file(cluster, second, f"{stack}_data"), 30, "new data")
        assert anew != written
        assert data_file(cluster, first, f"{stack}_data") == written
        ops.settle()
        assert len(ops.notices(f"{stack}_db started on")) == 1, ops.notices(stack)
        # A file that sends it to the manager, away from both copies: refused, confirmed.
        (ops.stacks_dir / f"{stack}.yaml").write_text(
            text.replace("node.role == worker", "node.role == manager")
        )
        refused = ops.chat(f"!deploy {stack}")
        code = re.search(r"!confirm ([A-Z0-9]{4}) deploys it anyway", refused)
        assert code, refused
        forced = ops.chat(f"!confirm {code.group(1)}")
        assert "confirmed: queued as job" in forced and f"deployed {stack}" in forced, forced
        assert f"moved away from their data: {stack}_db" in forced, forced
        assert cluster.wait_running(f"{stack}_db", 1) == ["manager1"]
    finally:
        ops.chat(f"!activate {first}")
        remove(cluster, stack)
        for node in (first, "worker1", "worker2", "manager1"):
            with contextlib.suppress(AssertionError):
                cluster.docker("volume", "rm", "-f", volume, node=node)


def test_check_is_quiet_when_a_label_only_one_node_has_pins_the_data(
    ops: ClusterBot, image: str, run_id: str
) -> None:
    """worker1 alone has tier=small: a service pinned by it keeps its data; two replicas
    on a local volume are warned about, whatever the pinning."""
    stack = f"{run_id}-pinned-data"
    doc = yaml.safe_load(
        stack_yaml({"db": {"image": image, "constraints": ["node.labels.tier == small"]}})
    )
    doc["services"]["db"]["volumes"] = ["data:/data"]
    doc["volumes"] = {"data": {}}
    (ops.stacks_dir / f"{stack}.yaml").write_text(yaml.safe_dump(doc))
    out = ops.chat(f"!check {stack}")
    assert f"{stack}: no problems found" in out, out
    doc["services"]["db"]["deploy"]["replicas"] = 2
    (ops.stacks_dir / f"{stack}.yaml").write_text(yaml.safe_dump(doc))
    out = ops.chat(f"!check {stack}")
    assert f"2 replicas on local volume {stack}_data: each replica has its own data" in out, out


def test_a_worker_pointed_at_another_swarm_takes_no_jobs(
    cluster: Cluster, workdir: Path, redis_url: str, swarm: docker.DockerClient
) -> None:
    """The probe: a worker that served one swarm, restarted with its socket on another
    daemon (this cluster's manager). It says so, and runs nothing there."""
    env = BotEnv(workdir, redis_url, "moved-socket")
    env.start_worker("served-local")  # the local swarm: remembered as the one served
    assert "pong from worker served-local" in env.chat("!ping")
    env.stop_worker()
    local = swarm.info()["Swarm"]["Cluster"]["ID"]
    other = cluster.client().info()["Swarm"]["Cluster"]["ID"]
    env.start_worker("moved", env=cluster.env(), wait=False)  # never ready: it refuses
    try:
        wait_until(lambda: f"is in swarm {other}" in env.worker_log.read_text(), 30, "the refusal")
        log = env.worker_log.read_text()
        assert f"this worker serves swarm {local}" in log, log[-2000:]
        waiting = env.chat_in_background("!ping")
        shown = env.ask("!swarm")
        assert re.search(rf"moved\s+unix://\S+\s+manager1 \(manager\)\s+{other}\s+NO", shown), (
            shown
        )
        record = wait_until(lambda: env.last_job() or None, 10, "the queued ping")
        # Long enough for a worker that takes jobs to have taken it (it reads every second).
        wait_until(lambda: time.time() - float(record["created"]) > 3, 10, "three seconds")
        assert env.last_job().get("state") == "queued", env.last_job()
        assert waiting.poll() is None, "answered from the wrong swarm"
        waiting.kill()
    finally:
        env.stop_worker()


def test_a_node_that_dies_is_told_once_and_its_tasks_move(
    ops: ClusterBot, cluster: Cluster, image: str, run_id: str
) -> None:
    """worker2's dockerd is killed (the node stays down for the rest of this module)."""
    stack = ops.add_stack(f"{run_id}-survivor", {"web": {"image": image, "replicas": 3}})
    assert f"deployed {stack}" in ops.chat(f"!deploy {stack}")
    cluster.kill_node("worker2")
    wait_until(lambda: ops.notices("node worker2 is down"), 60, "the node-down notice")
    hosts = cluster.wait_running(f"{stack}_web", 3, timeout=90)
    assert "worker2" not in hosts, hosts
    ops.settle()
    notice = ops.notices("node worker2 is down")
    assert notice == ["node worker2 is down: swarm moves its tasks to other nodes"], notice
    moved = wait_until(lambda: ops.notices("tasks of node worker2 placed again"), 60, "where")
    assert len(moved) == 1, moved
    line = next(x for x in moved[0].splitlines() if x.startswith(f"{stack}_web: "))
    assert "worker2" not in line and ("manager1" in line or "worker1" in line), moved
    out = ops.chat("!nodes")
    assert re.search(r"worker2\s+worker\s+active\s+down", out), out
