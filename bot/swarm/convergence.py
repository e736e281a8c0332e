"""Has a service converged? Pure functions over Engine API dicts, as the docker CLI judges it.

The rules follow the CLI's own wait (cli/command/service/progress): only tasks of the
current spec version count (``_up-to-date``), tasks on nodes that are down are ignored, and
a replica slot (a node, for global services) counts once when a task in it is both desired
and actually ``running``. On top of that the bot closes the CLI's known holes: a rolled-back
or paused update is a failure, and a task that failed or was rejected fails the service at
once instead of being retried forever (swarm's own update logic treats one failed task as
a failure too: ``max_failure_ratio`` defaults to 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

FAILED_TASK_STATES = frozenset({"failed", "rejected"})
WAITING_EXPLAINED = {
    "new": "not yet scheduled",
    "pending": "waiting for a node",
    "assigned": "assigned to a node",
    "accepted": "accepted by a node",
    "preparing": "preparing (pulling the image?)",
    "ready": "ready, waiting to start",
    "starting": "starting",
    "complete": "exited 0 and waits to restart",
    "shutdown": "shut down",
    "orphaned": "orphaned (node lost)",
    "remove": "being removed",
}


def parse_time(stamp: str | None) -> float:
    """Docker's RFC 3339 timestamps carry nanoseconds, which ``fromisoformat`` rejects."""
    if not stamp or stamp.startswith("0001-"):
        return 0.0
    head, _, frac = stamp.rstrip("Z").partition(".")
    tz = ""
    for sign in ("+", "-"):
        if sign in frac:
            frac, tz = frac.split(sign, 1)
            tz = sign + tz
    micro = (frac + "000000")[:6]
    return datetime.fromisoformat(f"{head}.{micro}{tz or '+00:00'}").timestamp()


AssessmentState = Literal["converging", "converged", "failed", "rolled_back", "paused"]


@dataclass(frozen=True)
class Assessment:
    """One look at one service: where it stands and, if not running, why."""

    name: str
    state: AssessmentState
    running: int
    desired: int
    reason: str = ""


def desired_replicas(service: dict[str, Any]) -> int | None:
    mode = service["Spec"].get("Mode", {})
    if "Replicated" in mode:
        return int(mode["Replicated"].get("Replicas", 1))
    if "Global" in mode:
        status = service.get("ServiceStatus") or {}
        return int(status.get("DesiredTasks", 0))
    return None  # job modes: not a long-running service


def mode_name(service: dict[str, Any]) -> str:
    mode = service["Spec"].get("Mode", {})
    return next(iter(mode), "replicated").lower()


def assess(
    service: dict[str, Any],
    tasks: list[dict[str, Any]],
    down_nodes: set[str],
    since: float,
    rollback: bool = False,
) -> Assessment:
    """Judge ``service`` from its up-to-date ``tasks``; ``since`` is when our change began.
    With ``rollback`` (an asked-for rollback) a completed rollback is the goal, not a failure.

    An update status that started before ``since`` belongs to someone else's change (a
    stale ``rollback_completed`` must not fail an unchanged redeploy), so it is ignored.
    """
    name = service["Spec"]["Name"]
    desired = desired_replicas(service)
    update = service.get("UpdateStatus") or {}
    ours = parse_time(update.get("StartedAt")) >= since - 1.0
    update_state = update.get("State", "") if ours else ""
    stopped = _stopped_update(name, update_state, update.get("Message", ""), desired, rollback)
    if stopped is not None:
        return stopped
    if desired is None:
        return Assessment(name, "converged", 0, 0, "job-mode service: not watched")
    slots = _slots(tasks, down_nodes)
    # A task that fails once is retried by swarm unless its restart policy says never: the
    # outcome is a failure once the retry fails too (a start that failed for a passing
    # reason, say two dozen containers starting at once, is not the deploy's failure).
    condition = ((service["Spec"].get("TaskTemplate") or {}).get("RestartPolicy") or {}).get(
        "Condition", "any"
    )
    seen = _read_slots(slots, since, final_after=1 if condition == "none" else 2)
    running = seen.running
    failure_action = (service["Spec"].get("UpdateConfig") or {}).get("FailureAction", "pause")
    rolling = update_state in ("updating", "rollback_started")
    if seen.failure is not None and rolling and failure_action == "rollback" and not rollback:
        # Swarm is about to roll the update back (or is doing it): report that outcome.
        reason = f"{describe_task(seen.failure)}; rolling back"
        return Assessment(name, "converging", running, desired, reason)
    if seen.failure is not None:
        return Assessment(name, "failed", running, desired, describe_task(seen.failure))
    if update_state == "rollback_started":
        return Assessment(name, "converging", running, desired, "swarm is rolling the update back")
    if running >= desired:
        return Assessment(name, "converged", running, desired)
    if seen.retrying is not None:
        reason = f"{describe_task(seen.retrying)}; swarm is starting it again"
    elif seen.waiting is not None:
        reason = describe_task(seen.waiting)
    else:
        reason = "no tasks yet" if desired and not slots else ""
    return Assessment(name, "converging", running, desired, reason)


def _stopped_update(
    name: str, state: str, message: str, desired: int | None, rollback: bool
) -> Assessment | None:
    """Our change's update, stopped by swarm: rolled back (unless that was the goal) or
    paused. ``state`` is "" for an update that is not ours."""
    if state == "rollback_completed" and not rollback:
        return Assessment(
            name, "rolled_back", 0, desired or 0, message or "swarm rolled the update back"
        )
    if state in ("paused", "rollback_paused"):
        return Assessment(name, "paused", 0, desired or 0, message or "update paused")
    return None


def _slots(tasks: list[dict[str, Any]], down_nodes: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Tasks by replica slot (by node for a global service), oldest first; tasks on nodes
    that are down do not count."""
    slots: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        if task.get("NodeID") in down_nodes:
            continue
        key = str(task.get("Slot") or task.get("NodeID") or task["ID"])
        slots.setdefault(key, []).append(task)
    for slot_tasks in slots.values():
        slot_tasks.sort(key=lambda t: t.get("Version", {}).get("Index", 0))
    return slots


@dataclass
class _SlotsRead:
    running: int = 0
    failure: dict[str, Any] | None = None  # failed as many times as it may
    retrying: dict[str, Any] | None = None  # failed once: swarm starts it again
    waiting: dict[str, Any] | None = None  # the newest task of a slot not running yet


def _read_slots(
    slots: dict[str, list[dict[str, Any]]], since: float, final_after: int
) -> _SlotsRead:
    seen = _SlotsRead()
    for slot_tasks in slots.values():
        if any(_is_running(t) for t in slot_tasks):
            seen.running += 1
            continue
        # Only tasks our change started can fail it: after a dockerd restart, swarm's own
        # recovery leaves failed tasks of the same spec that predate the deploy.
        failed = [
            t
            for t in slot_tasks
            if t["Status"]["State"] in FAILED_TASK_STATES
            and parse_time(t.get("CreatedAt")) >= since - 1.0
        ]
        if len(failed) >= final_after and seen.failure is None:
            seen.failure = failed[-1]
        elif failed and seen.retrying is None:
            seen.retrying = failed[-1]
        if seen.waiting is None:
            seen.waiting = slot_tasks[-1]
    return seen


def _is_running(task: dict[str, Any]) -> bool:
    return task.get("DesiredState") == "running" and task["Status"]["State"] == "running"


# Task states of a task on its way to running: a service short of its replicas only
# because of these is being scheduled (a scale-up, a node replaced), not unhealthy.
ON_THE_WAY = frozenset(
    {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"}
)
FAILED_RECENTLY_SECONDS = 60.0


def failing_task(tasks: list[dict[str, Any]], now: float) -> dict[str, Any] | None:
    """Of a service short of its replicas: the task that shows why it is failing, or None
    when the missing tasks are merely on their way and none failed in the last minute."""
    for task in sorted(tasks, key=lambda t: t.get("Version", {}).get("Index", 0), reverse=True):
        status = task.get("Status", {})
        state = status.get("State", "")
        if state == "running":
            continue
        wanted = task.get("DesiredState") == "running"
        if state in ON_THE_WAY and wanted and not status.get("Err"):
            continue  # being scheduled
        recent = now - parse_time(status.get("Timestamp")) < FAILED_RECENTLY_SECONDS
        if wanted or (recent and state in ("failed", "rejected", "orphaned")):
            return task  # stuck with an error, or died just now
    return None


def describe_task(task: dict[str, Any]) -> str:
    """Why a task is not running, in the words an operator needs: error, exit code, state."""
    status = task.get("Status", {})
    state = status.get("State", "unknown")
    detail = status.get("Err") or WAITING_EXPLAINED.get(state, status.get("Message", ""))
    text = f"{state}: {detail}" if detail and detail != state else state
    code = (status.get("ContainerStatus") or {}).get("ExitCode")
    if state in FAILED_TASK_STATES and code not in (None, 0) and "exit" not in text:
        text += f" (exit code {code})"
    return text
