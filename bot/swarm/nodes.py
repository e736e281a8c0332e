"""The swarm's nodes as an operator asks about them: what each one runs and can take, and
what draining one would do to the services on it.

Pure functions over Engine API dicts (nodes, services, tasks), so `!nodes`, `!drain`'s
pre-check and its report read the same data the same way, and tests can feed them any
swarm shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.core.ids import hostname
from bot.swarm.placement import can_take, satisfies


def role(node: dict[str, Any]) -> str:
    """``worker``, ``manager``, ``manager (leader)``, ``manager (unreachable)``."""
    manager = node.get("ManagerStatus") or {}
    name = str((node.get("Spec") or {}).get("Role", "worker"))
    if manager.get("Leader"):
        return f"{name} (leader)"
    if manager.get("Reachability") == "unreachable":
        return f"{name} (unreachable)"
    return name


def running_here(tasks: list[dict[str, Any]], node_id: str) -> list[dict[str, Any]]:
    """The tasks a node runs now (or is starting), that swarm wants running."""
    return [
        t
        for t in tasks
        if t.get("NodeID") == node_id
        and t.get("DesiredState") == "running"
        and (t.get("Status") or {}).get("State") not in ("failed", "rejected", "shutdown")
    ]


def node_rows(nodes: list[dict[str, Any]], tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``!nodes``: one row per node with what it runs and what is reserved on it."""
    rows = []
    for node in nodes:
        spec, desc = node.get("Spec") or {}, node.get("Description") or {}
        resources = desc.get("Resources") or {}
        here = [
            t for t in running_here(tasks, node["ID"]) if t["Status"].get("State") == "running"
        ]
        reserved = [
            ((t.get("Spec") or {}).get("Resources") or {}).get("Reservations") or {} for t in here
        ]
        rows.append(
            {
                "id": node["ID"],
                "hostname": hostname(node),
                "role": role(node),
                "availability": spec.get("Availability", "active"),
                "status": (node.get("Status") or {}).get("State", "unknown"),
                "engine": (desc.get("Engine") or {}).get("EngineVersion", ""),
                "labels": dict(spec.get("Labels") or {}),
                "tasks": len(here),
                "cpus_reserved": sum(r.get("NanoCPUs", 0) for r in reserved) / 1e9,
                "cpus": resources.get("NanoCPUs", 0) / 1e9,
                "memory_reserved": sum(r.get("MemoryBytes", 0) for r in reserved),
                "memory": resources.get("MemoryBytes", 0),
            }
        )
    return sorted(rows, key=lambda r: str(r["hostname"]))


def find(nodes: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """A node by hostname (exact), or by ID or an unambiguous ID prefix."""
    by_host = [n for n in nodes if hostname(n) == name]
    if len(by_host) == 1:
        return by_host[0]
    by_id = [n for n in nodes if n["ID"] == name or (len(name) >= 4 and n["ID"].startswith(name))]
    return by_id[0] if len(by_id) == 1 else None


@dataclass(frozen=True)
class Impact:
    """What draining a node does to one service that has tasks on it."""

    service: str
    tasks: int  # its tasks on the node
    placeable: bool  # another node can take them
    message: str


def drain_impact(
    node: dict[str, Any],
    nodes: list[dict[str, Any]],
    services: list[dict[str, Any]],
    tasks: list[dict[str, Any]],
    data_here: Mapping[str, list[str]] | None = None,
) -> list[Impact]:
    """Per service with tasks on ``node``: can another active, ready node take them?
    Judged from the placement constraints and the max-replicas-per-node limit, as swarm's
    scheduler would (resources are not: reservations that no longer fit show up as tasks
    swarm cannot place, which the drain reports after the fact). ``data_here``: per service,
    the local volumes whose data is on this node: moving such a service leaves its data."""
    others = [n for n in nodes if n["ID"] != node["ID"] and can_take(n)]
    by_id = {s["ID"]: s for s in services}
    counts: dict[str, int] = {}
    for task in running_here(tasks, node["ID"]):
        counts[task.get("ServiceID", "")] = counts.get(task.get("ServiceID", ""), 0) + 1
    impacts = []
    for service_id, count in sorted(counts.items()):
        service = by_id.get(service_id)
        if service is None:
            continue
        spec = service["Spec"]
        name = spec["Name"]
        placement = (spec.get("TaskTemplate") or {}).get("Placement") or {}
        constraints = list(placement.get("Constraints") or [])
        fits = [n for n in others if satisfies(n, constraints)]
        if "Global" in (spec.get("Mode") or {}):
            impacts.append(Impact(name, count, True, "global: its task on this node stops"))
            continue
        if not fits:
            why = " and ".join(constraints) if constraints else "no other active, ready node"
            impacts.append(
                Impact(name, count, False, f"would lose placement: no other node for {why}")
            )
            continue
        limit = int(placement.get("MaxReplicas") or 0)
        replicas = int(((spec.get("Mode") or {}).get("Replicated") or {}).get("Replicas") or 0)
        if limit and len(fits) * limit < replicas:
            impacts.append(
                Impact(
                    name,
                    count,
                    False,
                    f"would drop to {len(fits) * limit}/{replicas}: at most {limit} per node "
                    f"on {len(fits)} other node{'s' * (len(fits) != 1)}",
                )
            )
            continue
        left = (data_here or {}).get(name)
        if left:
            message = f"would leave its data: volume {', '.join(left)} is on this node (local)"
            impacts.append(Impact(name, count, False, message))
            continue
        hosts = ", ".join(sorted(hostname(n) for n in fits))
        impacts.append(Impact(name, count, True, f"can move to {hosts}"))
    return impacts
