"""Where a service's data lives: the named volumes its running tasks mount, on which node.

A local named volume is a directory on one node: a task that swarm places on another node
(a drain, a node down, a constraint changed) starts with a new, empty volume of the same
name, and a database in it initialises itself empty and reports healthy. Swarm keeps only
a short task history, so the worker keeps its own record of which nodes each volume has
been used on (``bot.queue.volumestore``), from what it sees running. Pure functions over
Engine API dicts, read through the manager's socket only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.core.ids import hostname, stack_of
from bot.swarm.placement import satisfies
from bot.swarm.preflight.check import SHARED_TYPES, local_volumes


@dataclass(frozen=True)
class Use:
    """A running task of ``service`` mounting ``volume`` on node ``node``."""

    volume: str
    node: str
    service: str
    stack: str
    driver: str  # "local", "local (nfs)", or the volume plugin's name
    portable: bool  # shared storage: the data follows the service


def driver_of(mount: dict[str, Any]) -> tuple[str, bool]:
    """A volume mount's driver as operators say it, and whether its data is shared."""
    config = (mount.get("VolumeOptions") or {}).get("DriverConfig") or {}
    name = str(config.get("Name") or "local")
    kind = str((config.get("Options") or {}).get("type") or "")
    if name != "local":
        return name, True
    if kind in SHARED_TYPES:
        return f"local ({kind})", True
    return "local", False


def volume_mounts(service: dict[str, Any]) -> list[dict[str, Any]]:
    container = (service["Spec"].get("TaskTemplate") or {}).get("ContainerSpec") or {}
    return [
        m for m in container.get("Mounts") or [] if m.get("Type") == "volume" and m.get("Source")
    ]


def uses(
    services: list[dict[str, Any]], tasks: list[dict[str, Any]], nodes: list[dict[str, Any]]
) -> list[Use]:
    """Every (volume, node, service) a running task shows now."""
    hosts = {n["ID"]: hostname(n) for n in nodes}
    by_id = {s["ID"]: s for s in services}
    out = set()
    for task in tasks:
        if (task.get("Status") or {}).get("State") != "running":
            continue
        service = by_id.get(task.get("ServiceID", ""))
        node = hosts.get(task.get("NodeID", ""))
        if service is None or node is None:
            continue
        for mount in volume_mounts(service):
            driver, portable = driver_of(mount)
            out.add(
                Use(
                    volume=str(mount["Source"]),
                    node=node,
                    service=service["Spec"]["Name"],
                    stack=stack_of(service["Spec"].get("Labels")),
                    driver=driver,
                    portable=portable,
                )
            )
    return sorted(out, key=lambda u: (u.volume, u.node, u.service))


def pinned_to(service: dict[str, Any], nodes: list[dict[str, Any]]) -> str:
    """The one node the service's constraints allow (its hostname), or "" if several."""
    constraints = list(
        ((service["Spec"].get("TaskTemplate") or {}).get("Placement") or {}).get("Constraints")
        or []
    )
    allowed = [hostname(n) for n in nodes if satisfies(n, constraints)]
    return allowed[0] if len(allowed) == 1 else ""


def leaving_data(
    stack: str,
    rendered: dict[str, Any],
    nodes: list[dict[str, Any]],
    volume_nodes: dict[str, list[str]],
) -> dict[str, str]:
    """Per service of the file (``<stack>_<name>``): why deploying it moves it away from its
    data, when its local volume's data is on nodes none of which its constraints allow."""
    by_host = {hostname(n): n for n in nodes}
    out = {}
    for short, service in sorted((rendered.get("services") or {}).items()):
        placement = ((service or {}).get("deploy") or {}).get("placement") or {}
        constraints = list(placement.get("constraints") or [])
        for volume in local_volumes(stack, service or {}, rendered):
            where = [h for h in volume_nodes.get(volume, []) if h in by_host]
            if where and not any(satisfies(by_host[h], constraints) for h in where):
                out[f"{stack}_{short}"] = (
                    f"moves away from its data: volume {volume} is on {', '.join(where)}, "
                    "which its constraints exclude"
                )
    return out
