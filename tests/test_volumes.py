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
