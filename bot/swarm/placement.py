"""Where swarm may place a task: placement constraints judged against nodes, as swarm's
scheduler judges them, for `!check` (before a deploy) and `!drain` (before a drain)."""

from __future__ import annotations

import re
from typing import Any

from bot.core.availability import state_word
from bot.core.ids import hostname


def can_take(node: dict[str, Any]) -> bool:
    """A node swarm may place new tasks on: ready, and active (not paused or drained)."""
    ready = (node.get("Status") or {}).get("State", "ready") == "ready"
    return bool(ready and (node.get("Spec") or {}).get("Availability", "active") == "active")


def why_not(node: dict[str, Any]) -> str:
    """Why a node takes no new tasks: ``drained``, ``paused``, ``down``."""
    availability = (node.get("Spec") or {}).get("Availability", "active")
    if availability != "active":
        return state_word(availability)
    return str((node.get("Status") or {}).get("State", "down"))


def _node_value(node: dict[str, Any], key: str) -> str | None:
    desc, spec = node.get("Description") or {}, node.get("Spec") or {}
    simple = {
        "node.id": node.get("ID"),
        "node.hostname": desc.get("Hostname"),
        "node.role": spec.get("Role"),
        "node.platform.os": (desc.get("Platform") or {}).get("OS"),
        "node.platform.arch": (desc.get("Platform") or {}).get("Architecture"),
    }
    if key in simple:
        return simple[key]
    if key.startswith("node.labels."):
        return (spec.get("Labels") or {}).get(key[len("node.labels.") :])
    if key.startswith("engine.labels."):
        return ((desc.get("Engine") or {}).get("Labels") or {}).get(key[len("engine.labels.") :])
    return None


def satisfies(node: dict[str, Any], constraints: list[str]) -> bool:
    """Does the node meet every constraint (whether or not it takes tasks now)?"""
    for constraint in constraints:
        match = re.match(r"^\s*([\w.-]+)\s*(==|!=)\s*(.*?)\s*$", constraint)
        if not match:
            continue  # an expression we cannot judge is not held against the file
        key, op, want = match.groups()
        have = _node_value(node, key)
        if (op == "==") != (have is not None and have.lower() == want.lower()):
            return False
    return True


def unplaceable(nodes: list[dict[str, Any]], constraints: list[str]) -> str:
    """Why no node can take a task with these constraints now, or "" if one can."""
    fits = [n for n in nodes if satisfies(n, constraints)]
    if any(can_take(n) for n in fits):
        return ""
    wanted = " and ".join(constraints)
    if not fits:
        return f"no node satisfies {wanted}"
    which = ", ".join(f"{hostname(n)} ({why_not(n)})" for n in fits)
    return f"only {which} satisfies {wanted}, and takes no tasks now"
