"""``!ps <service>``: a service's tasks, with the error of failed or rejected ones."""

from __future__ import annotations

from typing import Any

from bot.core.operations import Answer, JobRun, WorkerTools
from bot.core.replies import Reply, Table, ago, plural
from bot.core.wire import Result
from commands.base import Command, error_reply, service_arg

BAD_STATES = {"failed", "rejected", "orphaned"}


def render(result: Result) -> Reply:
    if not result.ok:
        return error_reply(result)
    rows = result.data["rows"]
    name = result.data["service"]
    if not rows:
        return Reply(f"{name} has no tasks", status="ok", job=result.job)
    flagged = frozenset(i for i, r in enumerate(rows) if r["state"] in BAD_STATES)
    table = Table(
        ("SLOT", "NODE", "DESIRED", "CURRENT", "SINCE", "ERROR"),
        tuple(
            (
                str(r["slot"] or "-"),
                r["node"],
                r["desired"],
                r["state"],
                ago(r["since"]),
                _error(r),
            )
            for r in rows
        ),
        flagged,
    )
    return Reply(f"{name}: {plural(len(rows), 'task')}", table, status="ok", job=result.job)


def _error(row: dict[str, Any]) -> str:
    text = row["error"] or ""
    if row["state"] in BAD_STATES and row.get("exit_code") not in (None, 0) and "exit" not in text:
        text += f" (exit code {row['exit_code']})"
    return text[:120]


def handle(tools: WorkerTools, run: JobRun) -> Answer:
    service = tools.resolve(run.job)
    rows = tools.engine.task_rows(service.id)
    return Answer(True, {"service": service.name, "rows": rows}, plural(len(rows), "task"))


COMMAND = Command(
    name="ps",
    summary="show a service's tasks: slot, node, desired and current state, errors",
    args=(service_arg(),),
    examples=("!ps gerrit", "!ps dev_gerrit"),
    read_only=True,
    handler=handle,
    render=render,
)
