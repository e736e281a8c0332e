"""Deciding notices: pure functions of the state before and after a look.

The watcher reads Docker and Redis, then asks these what to tell; they read neither, so
every rule here is tested with tables of cases (tests/test_notice_decisions.py): the first
look only learns, a job's claim or its expected state silences a change, a stack from git
is told as drift (by the source watcher), an outside change waits for swarm's update to
finish and its quiet period, a failed update and a service losing tasks are told at once,
node changes are told once each.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.core.ids import COMMIT_LABEL, image_tag, stack_of
from bot.swarm.convergence import parse_time
from bot.swarm.notices import wording

Summary = dict[str, Any]  # one service as the watcher keeps it (``summarize``)
NodeSeen = dict[str, str]  # host, status, availability

# Update states that mean swarm's own update of a service went wrong.
FAILING = frozenset({"rollback_started", "rollback_completed", "paused", "rollback_paused"})
UPDATING = frozenset({"updating", "rollback_started"})


@dataclass(frozen=True)
class Told:
    """One notice to post: to the rooms routed for ``stack`` ("" for the swarm's own)."""

    stack: str
    text: str
    lines: tuple[str, ...] = ()
    key: str = ""  # what makes two notices the same one
    status: str = "info"
    story: str = ""  # notices of one story are one message, edited (an outside change)


@dataclass
class Pending:
    """An outside change waiting for swarm's update to finish before it is told."""

    stack: str
    changes: dict[str, str]  # service name -> what changed
    started: float
    quiet_since: float
    outcome: dict[str, str] = field(default_factory=dict)  # service name -> outcome


def well_formed(held: Pending) -> bool:
    """A held change read back from Redis has the shapes ``finished`` relies on."""
    return (
        isinstance(held.stack, str)
        and isinstance(held.changes, dict)
        and isinstance(held.outcome, dict)
        and all(isinstance(v, str) for v in (*held.changes.values(), *held.outcome.values()))
        and isinstance(held.started, int | float)
        and isinstance(held.quiet_since, int | float)
    )


@dataclass
class Decision:
    told: list[Told] = field(default_factory=list)
    # Outside changes first seen in this look: told as started, edited when they finish.
    begun: list[Told] = field(default_factory=list)
    consumed: set[str] = field(default_factory=set)  # expected markers that matched
    drifted: bool = False  # a stack from git changed: the source watcher tells it


def summarize(service: Mapping[str, Any]) -> Summary:
    """What the watcher keeps of a service (Engine API dict) between looks."""
    spec = service["Spec"]
    status = service.get("ServiceStatus") or {}
    update = service.get("UpdateStatus") or {}
    mode = spec.get("Mode") or {}
    return {
        "name": spec["Name"],
        "stack": stack_of(spec.get("Labels")),
        "spec": spec_hash(spec),
        "image": image_tag(spec),
        "replicas": (mode.get("Replicated") or {}).get("Replicas"),
        "update": update.get("State", ""),
        "update_started": parse_time(update.get("StartedAt")),
        "update_message": update.get("Message", ""),
        "healthy": int(status.get("RunningTasks", 0)) >= int(status.get("DesiredTasks", 0)),
        "commit": (spec.get("Labels") or {}).get(COMMIT_LABEL, ""),
    }


SUMMARY_KEYS = frozenset(
    {
        "name",
        "stack",
        "spec",
        "image",
        "replicas",
        "update",
        "update_started",
        "update_message",
        "healthy",
        "commit",
    }
)


def spec_hash(spec: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def newly_unhealthy(
    seen: Mapping[str, Summary], current: Mapping[str, Summary], *, first: bool | None = None
) -> list[str]:
    """Services short of replicas that were whole (or unknown) at the last look: the
    watcher asks Docker why (failing, or only being scheduled) before deciding.
    ``first``: this is the first look (default: nothing was seen; a look at some services
    only may have seen none of them before, and is still not the first)."""
    if not seen if first is None else first:
        return []
    return [
        sid
        for sid, cur in current.items()
        if not cur["healthy"] and (seen.get(sid) is None or seen[sid]["healthy"])
    ]


def services(
    seen: Mapping[str, Summary],
    current: Mapping[str, Summary],
    pending: dict[str, Pending],
    *,
    claimed: Collection[str],
    expected: Mapping[str, str],
    from_git: bool,
    now: float,
    first: bool | None = None,
) -> Decision:
    """What changed in the services since the last look. ``pending`` (outside changes held
    for their quiet period) is updated in place; ``expected``: the state a job said it made,
    per service ID ("removed" for one it removed).

    A job's expectation explains only the first look after the job: it is consumed then,
    whether it matched or not. Kept longer, it would swallow a later hand change that
    happens to return the service to the state the job left (a hand scale back to the
    bot's count).

    ``first`` as in ``newly_unhealthy``."""
    decision = Decision()
    if not seen if first is None else first:
        return decision  # the first look only learns
    for sid, cur in current.items():
        if cur["stack"] in claimed or cur["name"] in claimed:
            continue  # a bot job tells its own story
        old = seen.get(sid)
        if old is None or old["spec"] != cur["spec"]:
            _spec_changed(decision, pending, sid, old, cur, expected, from_git, now)
        if cur["update"] != (old or {}).get("update") and cur["update"] in FAILING:
            _update_failed(decision, pending, sid, cur)
        if sid in expected:
            decision.consumed.add(sid)  # this look was the one it could explain
        lost_tasks = old is not None and old["healthy"] and not cur["healthy"]
        if lost_tasks and cur["update"] != "updating":
            text = wording.unhealthy(cur["name"], cur.get("failing", ""))
            decision.told.append(Told(cur["stack"], text, (), f"sick-{sid}-{int(now)}", "failed"))
    for sid, old in seen.items():
        if sid in current or old["stack"] in claimed or old["name"] in claimed:
            continue
        if sid in expected:
            decision.consumed.add(sid)
        if expected.get(sid) != "removed":
            decision.told.append(Told(old["stack"], wording.removed(old["name"]), (), f"rm-{sid}"))
    return decision


def _spec_changed(
    decision: Decision,
    pending: dict[str, Pending],
    sid: str,
    old: Summary | None,
    cur: Summary,
    expected: Mapping[str, str],
    from_git: bool,
    now: float,
) -> None:
    if expected.get(sid) == cur["spec"]:
        decision.consumed.add(sid)  # a job made it and told it
    elif old is not None and cur.get("commit") and from_git:
        decision.drifted = True  # told once, as drift from its commit, with the diff
    else:
        key = cur["stack"] or cur["name"]
        if key not in pending:
            story = f"out-{key}-{now}"
            text = wording.changing_outside(key, cur["name"])
            decision.begun.append(Told(cur["stack"], text, (), f"{story}-start", story=story))
        held = pending.setdefault(key, Pending(cur["stack"], {}, now, now))
        held.changes[cur["name"]] = wording.change(old, cur)
        held.quiet_since = now


def _update_failed(
    decision: Decision, pending: dict[str, Pending], sid: str, cur: Summary
) -> None:
    outcome = wording.update_outcome(cur["update"], cur["update_message"])
    held = pending.get(cur["stack"] or cur["name"])
    if held is not None and cur["name"] in held.changes:
        held.outcome[cur["name"]] = outcome  # told with the change itself
    else:
        key = f"fail-{sid}-{cur['update_started']}"
        text = wording.swarm_failed(cur["name"], outcome)
        decision.told.append(Told(cur["stack"], text, (), key, "failed"))


def finished(
    current: Mapping[str, Summary], pending: dict[str, Pending], now: float, quiet: float
) -> list[Told]:
    """The outside changes whose updates have finished (or never started) and that have
    been quiet for ``quiet`` seconds: told, with each service's outcome, and dropped from
    ``pending``."""
    by_name = {c["name"]: c for c in current.values()}
    told = []
    for key, held in list(pending.items()):
        states = [by_name.get(name) for name in held.changes]
        if any(s and s["update"] in UPDATING for s in states) or now - held.quiet_since < quiet:
            continue
        del pending[key]
        lines, failed = [], False
        for name, what in held.changes.items():
            outcome = held.outcome.get(name) or _outcome(by_name.get(name), held.started)
            failed = failed or outcome is not None
            lines.append(wording.change_line(name, what, outcome))
        head = wording.changed_outside(key, len(held.changes), now - held.started, failed)
        status = "failed" if failed else "info"
        story = f"out-{key}-{held.started}"
        told.append(Told(held.stack, head, tuple(lines), story, status, story))
    return told


def _outcome(state: Summary | None, started: float) -> str | None:
    """A failed update of this change (one that started with it, not an older one)."""
    if state is None or state["update_started"] < started - 1 or state["update"] not in FAILING:
        return None
    return f"{state['update'].replace('_', ' ')}: {state['update_message']}"


@dataclass
class NodeDecision:
    told: list[Told] = field(default_factory=list)
    # Outside changes first seen in this look: told as started, edited when they finish.
    begun: list[Told] = field(default_factory=list)
    consumed: set[str] = field(default_factory=set)
    down: list[str] = field(default_factory=list)  # node IDs that went down


def nodes(
    seen: Mapping[str, NodeSeen] | None,
    now_nodes: Mapping[str, NodeSeen],
    expected: Mapping[str, str],
    now: float,
) -> NodeDecision:
    """Nodes that joined, left, went down or came back, and availability changed by hand
    (a job expects its own change and tells it). ``seen`` None: the first look."""
    decision = NodeDecision()
    if seen is None:
        return decision
    for node_id, cur in now_nodes.items():
        old, host = seen.get(node_id), cur["host"]
        stamp = f"{node_id}-{int(now)}"
        if old is None:
            decision.told.append(
                Told("", wording.node_joined(host, cur["status"]), (), f"node-join-{node_id}")
            )
            continue
        if old["status"] != cur["status"] and cur["status"] == "down":
            decision.told.append(
                Told("", wording.node_down(host), (), f"node-down-{stamp}", "failed")
            )
            decision.down.append(node_id)
        elif old["status"] != cur["status"] and cur["status"] == "ready":
            decision.told.append(Told("", wording.node_back(host), (), f"node-up-{stamp}"))
        if old["availability"] != cur["availability"]:
            if expected.get(node_id) == cur["availability"]:
                decision.consumed.add(node_id)
            else:
                text = wording.node_availability(host, cur["availability"])
                decision.told.append(Told("", text, (), f"node-av-{stamp}"))
    for node_id, old in seen.items():
        if node_id not in now_nodes:
            decision.told.append(
                Told("", wording.node_left(old["host"]), (), f"node-left-{node_id}")
            )
    return decision
