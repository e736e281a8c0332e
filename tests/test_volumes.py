"""Where data lives (``bot.swarm.volumes``): which nodes a named volume's tasks ran on."""

from __future__ import annotations

import pytest

from bot.swarm import volumes

pytestmark = pytest.mark.unit


def svc(name: str, mounts: list[dict], constraints: list[str] | None = None) -> dict:
    return {
        "ID": f"id-{name}",
        "Spec": {
            "Name": name,
            "Labels": {"com.docker.stack.namespace": name.split("_")[0]},
            "TaskTemplate": {
                "ContainerSpec": {"Mounts": mounts},
                "Placement": {"Constraints": constraints or []},
            },
        },
    }


NODES = [
    {"ID": "n1", "Description": {"Hostname": "worker1"}, "Spec": {"Role": "worker"}},
    {"ID": "n2", "Description": {"Hostname": "worker2"}, "Spec": {"Role": "worker"}},
]
LOCAL = {"Type": "volume", "Source": "support_pgdata", "Target": "/var/lib/postgresql"}
NFS = {
    "Type": "volume",
    "Source": "cdn_media",
    "Target": "/media",
    "VolumeOptions": {"DriverConfig": {"Name": "local", "Options": {"type": "nfs"}}},
}


def task(service: str, node: str, state: str = "running") -> dict:
    return {"ServiceID": f"id-{service}", "NodeID": node, "Status": {"State": state}}


def test_a_running_task_places_its_volumes_data_on_its_node() -> None:
    found = volumes.uses(
        [svc("support_postgres", [LOCAL]), svc("cdn_files", [NFS])],
        [
            task("support_postgres", "n1"),
            task("cdn_files", "n2"),
            task("cdn_files", "n1", "failed"),
        ],
        NODES,
    )
    assert [(u.volume, u.node, u.driver, u.portable) for u in found] == [
        ("cdn_media", "worker2", "local (nfs)", True),
        ("support_pgdata", "worker1", "local", False),
    ]


@pytest.mark.parametrize(
    ("constraints", "pinned"),
    [
        ([], ""),
        (["node.hostname == worker1"], "worker1"),
        (["node.role == worker"], ""),
    ],
)
def test_pinned_means_the_constraints_allow_one_node(constraints: list[str], pinned: str) -> None:
    assert volumes.pinned_to(svc("support_postgres", [LOCAL], constraints), NODES) == pinned


def check(service: dict, volumes_declared: dict, nodes: list, where: dict) -> list[str]:
    from bot.swarm.preflight.check import SwarmSnapshot, _local_data

    rendered = {"services": {"db": service}, "volumes": volumes_declared}
    swarm = SwarmSnapshot(nodes=nodes, volume_nodes=where)
    return [p.message for p in _local_data("support", "db", service, rendered, swarm)]


DATA = {"volumes": [{"type": "volume", "source": "pgdata", "target": "/data"}]}


def test_check_warns_of_a_local_volume_its_service_may_leave() -> None:
    [said] = check(DATA, {"pgdata": {}}, NODES, {"support_pgdata": ["worker1"]})
    assert said.startswith("local volume support_pgdata, and 2 nodes its constraints allow")
    assert "its data is on worker1; pin it (node.hostname == worker1" in said


def test_check_is_quiet_for_a_pinned_service_and_for_shared_storage() -> None:
    pinned = {**DATA, "deploy": {"placement": {"constraints": ["node.hostname == worker1"]}}}
    nfs = {"pgdata": {"driver_opts": {"type": "nfs", "o": "addr=10.0.0.5"}}}
    assert check(pinned, {"pgdata": {}}, NODES, {}) == []
    assert check(DATA, nfs, NODES, {}) == []


def test_check_warns_that_each_replica_on_a_local_volume_has_its_own_data() -> None:
    replicated = {**DATA, "deploy": {"replicas": 2}}
    said = check(replicated, {"pgdata": {}}, NODES[:1], {})
    assert said == [
        "2 replicas on local volume support_pgdata: each replica has its own data (use "
        "shared storage, or one replica)"
    ]


def test_check_refuses_an_nfs_volume_that_names_no_server() -> None:
    from bot.swarm.preflight.check import _nfs_without_server

    rendered = {
        "volumes": {
            "media": {"driver_opts": {"type": "nfs", "device": ":/export/media"}},
            "good": {"driver_opts": {"type": "nfs4", "o": "addr=10.0.0.5,rw", "device": ":/x"}},
        }
    }
    [problem] = _nfs_without_server(rendered)
    assert problem.key == "volumes.media.driver_opts" and problem.error
