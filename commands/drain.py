"""``!drain <node>``: move every task off a node (``docker node update --availability
drain``), checked first and watched until the tasks have moved. ``!activate`` and ``!pause``
(one file each) set the node's other availabilities through the same handler."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

from bot.core.availability import change_word, state_word
from bot.core.operations import Answer, Handler, JobRun, Notice, WorkerTools, who
from bot.core.replies import Reply, Table, plural
from bot.core.wire import Job, Result
from commands.base import Arg, Command, error_reply

NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")  # a hostname or a node ID


def node_arg() -> Arg:
    return Arg("node", NODE_NAME, "a node's hostname or ID")


def handler(availability: str) -> Handler:
    def handle(tools: WorkerTools, run: JobRun) -> Answer:
        force = bool(run.args.get("force"))
        return tools.change_node(run, run.args["node"], availability, force)

    return handle


def render(result: Result) -> Reply:
    data = result.data
    if "node" not in data:
        return error_reply(result)
    node, availability = data["node"], data["availability"]
    if data.get("unchanged"):
        return Reply(
            f"{node} was already {state_word(availability)}; nothing changed",
            status="ok",
            job=result.job,
        )
    if data.get("refused"):
        rows = [i for i in data["impact"] if not i["placeable"]]
        hidden = int(data.get("hidden", 0))
        table = Table(
            ("SERVICE", "TASKS HERE", "IF DRAINED"),
            tuple((i["service"], str(i["tasks"]), i["message"]) for i in rows),
            frozenset(range(len(rows))),
        )
        unseen = f", {hidden} of them in stacks your roles do not cover" if hidden else ""
        leave = any(i["message"].startswith("would leave its data") for i in rows)
        lose = any(not i["message"].startswith("would leave its data") for i in rows) or hidden
        what = " or ".join(
            w for w, on in (("would lose tasks", lose), ("would leave its data", leave)) if on
        )
        return Reply(
            f"{node} not drained: {plural(len(rows) + hidden, 'service')} {what}{unseen}",
            table,
            (f"!drain {node} --force drains it anyway",),
            status="failed",
            job=result.job,
        )
    if availability == "pause":
        return Reply(
            f"{node} paused: it takes no new tasks; the ones it runs keep running",
            status="ok",
            job=result.job,
        )
    if availability == "active":
        return Reply(
            f"{node} active: it takes new tasks again",
            detail=(
                "swarm does not move running tasks back by itself: !restart a service "
                "or !deploy its stack to spread it again",
            ),
            status="ok",
            job=result.job,
        )
    moved, stuck = data.get("moved", []), data.get("stuck", [])
    moving = data.get("moving", [])
    rows = [(m["service"], "moved", ", ".join(m["to"])) for m in moved]
    rows += [(s["service"], "NOT PLACED", _not_placed(s)) for s in stuck]
    rows += [(s["service"], "STILL MOVING", _not_placed(s)) for s in moving]
    table = Table(
        ("SERVICE", "TASKS", "WHERE / WHY"), tuple(rows), frozenset(range(len(moved), len(rows)))
    )
    head = f"{node} drained: {plural(len(moved), 'service')} moved"
    if stuck:
        head += f", {len(stuck)} could not be placed"
    if moving:
        head += f", {len(moving)} still moving at the deadline"
    if data.get("left"):
        head += f", {plural(data['left'], 'task')} still on it at the deadline"
    if data.get("away"):
        head += f"; now away from their data: {', '.join(data['away'])}"
    ok = result.ok
    return Reply(head, table if rows else None, status="ok" if ok else "failed", job=result.job)


def _not_placed(row: Mapping[str, Any]) -> str:
    """Swarm's reason, and where the service's tasks that do run are (if any)."""
    where = ", ".join(row.get("to") or [])
    return f"{row['reason']}" + (f" (running on {where})" if where else "")


def render_progress(data: Mapping[str, Any]) -> str:
    return (
        f"draining {data['node']}: {plural(data['left'], 'task')} left on it, "
        f"{data['moved']}/{data['of']} services placed again"
    )


def notice(availability: str) -> Callable[[Job, Mapping[str, Any]], list[Notice]]:
    def tell(job: Job, data: Mapping[str, Any]) -> list[Notice]:
        if "node" not in data or data.get("unchanged") or data.get("refused"):
            return []
        lines = [f"{m['service']}: moved to {', '.join(m['to'])}" for m in data.get("moved", [])]
        lines += [f"{s['service']}: NOT PLACED: {_not_placed(s)}" for s in data.get("stuck", [])]
        lines += [
            f"{s['service']}: still moving: {_not_placed(s)}" for s in data.get("moving", [])
        ]
        lines += [f"{a}: now away from its data" for a in data.get("away", [])]
        failed = data.get("stuck") or data.get("left") or data.get("moving")
        status: Literal["info", "failed"] = "failed" if failed else "info"
        said = change_word(availability)
        return [Notice("", f"node {data['node']} {said} {who(job)}", tuple(lines), status)]

    return tell


def confirm_text(args: Mapping[str, str]) -> str:
    if args.get("force"):
        return (
            f"this drains node {args['node']} without the check: swarm moves every task off "
            "it, and a service that no other node can take stays pending, not running"
        )
    return (
        f"this drains node {args['node']}: swarm moves every task off it (the job "
        "checks first, and drains nothing if a service would lose its placement)"
    )


COMMAND = Command(
    name="drain",
    summary="move every task off a node (docker node update --availability drain), "
    "checked first and watched until the tasks have moved",
    args=(
        node_arg(),
        Arg("force", re.compile(r"^--force$"), "--force", optional=True, shown="--force"),
    ),
    examples=("!drain worker2", "!drain worker2 --force"),
    handler=handler("drain"),
    render=render,
    render_progress=render_progress,
    confirm_text=confirm_text,
    notice=notice("drain"),
)
