"""Which swarm service or stack an alert is about, and the last change made to it: the first
question an operator asks of an alert is "what changed?".

The worker keeps, per stack, the last change a job made (``LastChange``, sealed in Redis by
``bot.queue.changestore``); the receiver looks up the stacks an alert's labels name.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# cAdvisor's and the engine's labels for a container's swarm service and stack, then the
# plain names people put in their own rules.
SERVICE_LABELS = (
    "container_label_com_docker_swarm_service_name",
    "com_docker_swarm_service_name",
    "service",
)
STACK_LABELS = (
    "container_label_com_docker_stack_namespace",
    "com_docker_stack_namespace",
    "stack",
)


@dataclass(frozen=True)
class LastChange:
    stack: str
    at: float  # when the job finished
    job: str
    who: str  # the requester as chat shows them
    command: str  # what they typed: "!deploy dev"
    commit: str = ""  # `7fb7ec9 "Raise the heap"` for a deploy from git
    undo: str = ""  # "!rollback dev", when there is one
    ok: bool = True
    services: tuple[str, ...] = field(default=())  # the services it changed, when known

    def as_dict(self) -> dict[str, object]:
        return {
            "stack": self.stack,
            "at": self.at,
            "job": self.job,
            "who": self.who,
            "command": self.command,
            "commit": self.commit,
            "undo": self.undo,
            "ok": self.ok,
            "services": list(self.services),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> LastChange | None:
        """None for anything not shaped like a record (sealed, yet read with care)."""
        at, services = raw.get("at"), raw.get("services", [])
        keys = ("stack", "job", "who", "command", "commit", "undo")
        texts = {k: raw.get(k, "") for k in keys}
        if (
            not isinstance(at, (int, float))
            or not isinstance(services, list)
            or not all(isinstance(v, str) and len(v) <= 500 for v in texts.values())
            or not texts["stack"]
        ):
            return None
        return cls(
            stack=str(texts["stack"]),
            at=float(at),
            job=str(texts["job"]),
            who=str(texts["who"]),
            command=str(texts["command"]),
            commit=str(texts["commit"]),
            undo=str(texts["undo"]),
            ok=bool(raw.get("ok", True)),
            services=tuple(str(s) for s in services[:200]),
        )


@dataclass(frozen=True)
class Subjects:
    services: tuple[str, ...]
    stacks: tuple[str, ...]


def subjects(
    labels: Iterable[Mapping[str, str]],
    service_labels: tuple[str, ...] = SERVICE_LABELS,
    stack_labels: tuple[str, ...] = STACK_LABELS,
) -> Subjects:
    """The services and stacks named by the alerts' labels. A service with no stack label
    is in the stack its name begins with (``dev_gerrit`` is in ``dev``), as swarm names it."""
    services: dict[str, None] = {}
    stacks: dict[str, None] = {}
    for one in labels:
        for key in service_labels:
            if one.get(key):
                services[one[key]] = None
        for key in stack_labels:
            if one.get(key):
                stacks[one[key]] = None
    for service in services:
        if "_" in service:
            stacks.setdefault(service.split("_", 1)[0], None)
    return Subjects(tuple(services), tuple(stacks))


def tie_line(change: LastChange, about: Subjects, fired: float, now: float | None = None) -> str:
    """ "dev_gerrit changed 4 min before this fired: !deploy dev by @alice at 7fb7ec9 "Raise
    the heap" — !rollback dev" """
    named = [s for s in about.services if s in change.services or s.startswith(change.stack + "_")]
    what = named[0] if named and (not change.services or named[0] in change.services) else ""
    what = what or f"stack {change.stack}"
    fired = fired or (now if now is not None else time.time())
    gap = fired - change.at
    when = f"{ago(abs(gap))} {'before' if gap >= 0 else 'after'} this fired"
    line = f"{what} changed {when}: {change.command} by {change.who}"
    if change.commit:
        line += f" at {change.commit}"
    if not change.ok:
        line += " (it failed)"
    if change.undo:
        line += f" — {change.undo}"
    return line


def ago(seconds: float) -> str:
    """4 s, 12 min, 3 h 5 min, 2 d."""
    seconds = max(0, int(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    return f"{hours // 24} d"
