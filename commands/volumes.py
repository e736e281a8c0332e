"""``!volumes [stack|node]``: each named volume with its stack, the services that mount it,
the node(s) its data is on, its driver, and whether its services are pinned to one node.

A local volume's data is on the nodes its tasks ran on (the worker keeps the record: swarm
forgets old tasks); a task placed on another node starts with an empty volume. Shared
storage (a volume plugin, or the local driver with ``type: nfs``) follows the service.
Reads only; the bot never removes a volume."""

from __future__ import annotations

import re
from typing import Any

from bot.core.ids import STACK_NAME
from bot.core.operations import Answer, JobRun, WorkerTools
from bot.core.replies import Reply, Table, plural
from bot.core.wire import Result
from commands.base import Arg, Command, error_reply

NAME = re.compile(rf"^(?:{STACK_NAME.pattern[1:-1]}|[A-Za-z0-9][A-Za-z0-9._-]{{0,62}})$")


def handle(tools: WorkerTools, run: JobRun) -> Answer:
    where = run.args.get("where", "")
    rows = [r for r in tools.volumes() if not where or r["stack"] == where or where in r["nodes"]]
    visible = [r for r in rows if tools.policy.may_see(run.job.requester, r["stack"])]
    risky = sum(1 for r in visible if _at_risk(r))
    data = {"where": where, "rows": visible, "hidden": len(rows) - len(visible)}
    return Answer(
        True, data, f"{plural(len(visible), 'volume')}, {risky} not pinned to their data"
    )


def _at_risk(row: dict[str, Any]) -> bool:
    """Local data its services may leave: not pinned, or pinned away from the data."""
    if row["portable"]:
        return False
    return not row["pinned"] or row["pinned"] not in row["nodes"]


def render(result: Result) -> Reply:
    if "rows" not in result.data:
        return error_reply(result)
    rows = result.data["rows"]
    where = f" ({result.data['where']})" if result.data.get("where") else ""
    if not rows:
        return Reply(f"no named volumes{where}", status="ok", job=result.job)
    flagged = frozenset(i for i, r in enumerate(rows) if _at_risk(r))
    table = Table(
        ("VOLUME", "STACK", "SERVICES", "DATA ON", "DRIVER", "PINNED"),
        tuple(
            (
                r["volume"],
                r["stack"] or "-",
                ", ".join(r["services"]),
                ", ".join(r["nodes"]) or "-",
                r["driver"] + (" (shared)" if r["portable"] else ""),
                _pinned(r),
            )
            for r in rows
        ),
        flagged,
    )
    head = f"{plural(len(rows), 'volume')}{where}"
    if flagged:
        head += f", {len(flagged)} whose services may move away from their data"
    lines: tuple[str, ...] = ()
    if flagged:
        lines = (
            "pin such a service to the node its data is on (deploy.placement.constraints: "
            "node.hostname == NODE, or a label only that node has), or use shared storage",
        )
    return Reply(head, table, lines, status="ok", job=result.job)


def _pinned(row: dict[str, Any]) -> str:
    if row["portable"]:
        return "not needed"
    if not row["pinned"]:
        return "no"
    return f"yes ({row['pinned']})" if row["pinned"] in row["nodes"] else f"to {row['pinned']}!"


COMMAND = Command(
    name="volumes",
    summary="named volumes: stack, services, the node(s) their data is on, driver, and "
    "whether the services are pinned to it",
    args=(Arg("where", NAME, "a stack or node name", optional=True, shown="stack|node"),),
    examples=("!volumes", "!volumes support", "!volumes worker1"),
    read_only=True,
    handler=handle,
    render=render,
)
