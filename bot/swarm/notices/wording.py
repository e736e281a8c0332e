"""How the notice watcher says what it saw: one function per kind of notice, so that the
decisions (``decide``) and the threads (``watcher``) hold no prose."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.core.availability import change_word
from bot.core.replies import plural


def change(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> str:
    """What changed in a service, as far as a person cares: created, image, replicas."""
    if old is None:
        return f"created ({new['image']})"
    parts = []
    if old["image"] != new["image"]:
        parts.append(f"image {old['image']} -> {new['image']}")
    if old["replicas"] != new["replicas"]:
        parts.append(f"replicas {old['replicas']} -> {new['replicas']}")
    return ", ".join(parts) or "settings changed"


def update_outcome(state: str, message: str) -> str:
    """``rollback completed: update out of sequence``."""
    return f"{state.replace('_', ' ')}: {message or 'no reason given'}"


def swarm_failed(name: str, outcome: str) -> str:
    return f"{name}: swarm {outcome}"


def unhealthy(name: str, why: str) -> str:
    return f"{name} is unhealthy: {why or 'tasks are not running'}"


def removed(name: str) -> str:
    return f"{name} was removed outside the bot"


def changed_outside(key: str, services: int, seconds: float, failed: bool) -> str:
    """The head of an outside change's notice; its lines say per service what changed."""
    head = f"{key}: changed outside the bot ({plural(services, 'service')}, {seconds:.0f}s)"
    return head + (": FAILED" if failed else "")


def changing_outside(key: str, service: str) -> str:
    """The first word of an outside change, edited to ``changed_outside`` when it ends."""
    return f"{key}: being changed outside the bot ({service} first)…"


def change_line(name: str, what: str, outcome: str | None) -> str:
    return f"{name}: {what} ({outcome or 'done'})"


def node_joined(host: str, status: str) -> str:
    return f"node {host} joined the swarm ({status})"


def node_down(host: str) -> str:
    return f"node {host} is down: swarm moves its tasks to other nodes"


def node_back(host: str) -> str:
    return f"node {host} is back (ready)"


def node_availability(host: str, availability: str) -> str:
    return f"node {host} {change_word(availability)} outside the bot"


def node_left(host: str) -> str:
    return f"node {host} left the swarm"


def tasks_placed(host: str, back: bool) -> str:
    return f"tasks of node {host} placed again" + (" (the node is back)" if back else "")


def placed_line(service: str, hosts: list[str]) -> str:
    return f"{service}: {', '.join(hosts) or 'nowhere yet'}"
