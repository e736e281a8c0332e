"""``!services [stack]``: every service with running/desired replicas; unhealthy ones flagged."""

from __future__ import annotations

from typing import Any

from bot.core.operations import Answer, JobRun, WorkerTools
from bot.core.replies import Reply, Table, ago, plural
from bot.core.wire import Result
from commands.base import Command, error_reply, stack_arg

# Row states (the worker's words) that need a person: flagged and counted as unhealthy.
# The others besides "ok" are changes in progress: updating, rolling back, scaling down,
# starting (short of replicas while the missing tasks are on their way).
TROUBLE = frozenset({"unhealthy", "update paused", "rollback paused"})


def state_of(row: dict[str, Any]) -> str:
    """A row's state; rows from a worker before the STATE column judge by the counts."""
    return str(row.get("state") or ("unhealthy" if row["running"] < row["desired"] else "ok"))


# A row on the wire: a list in this order, not a dict per service. At 500 services the
# keys were half the bytes the worker signs, Redis carries and the bot parses.
FIELDS = ("name", "mode", "running", "desired", "state", "image", "updated")


def rows_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a result: compact lists (``FIELDS``), or dicts from an older worker."""
    if "fields" not in data:
        return list(data["rows"])
    fields = data["fields"]
    return [dict(zip(fields, row, strict=True)) for row in data["rows"]]


def render(result: Result) -> Reply:
    if not result.ok:
        return error_reply(result)
    data = result.data
    rows = rows_of(data)
    where = f" in stack {data['stack']}" if data.get("stack") else ""
    if not rows:
        return Reply(f"no services{where}", status="ok", job=result.job)
    states = [state_of(r) for r in rows]
    flagged = frozenset(i for i, s in enumerate(states) if s in TROUBLE)
    changing = sum(1 for s in states if s not in TROUBLE and s != "ok")
    table = Table(
        ("SERVICE", "MODE", "REPLICAS", "STATE", "IMAGE", "UPDATED"),
        tuple(
            (
                r["name"],
                r["mode"],
                f"{r['running']}/{r['desired']}",
                state,
                r["image"],
                ago(r["updated"]),
            )
            for r, state in zip(rows, states, strict=True)
        ),
        flagged,
    )
    head = f"{plural(len(rows), 'service')}{where}"
    if not flagged and not changing:
        head += ", all healthy"
    else:
        parts = [f"{len(flagged)} unhealthy"] if flagged else []
        parts += [f"{changing} updating or scaling"] if changing else []
        head += ": " + ", ".join(parts)
    detail = (f"({data['hidden']} more in stacks you may not see)",) if data.get("hidden") else ()
    return Reply(head, table, detail, status="failed" if flagged else "ok", job=result.job)


def handle(tools: WorkerTools, run: JobRun) -> Answer:
    job = run.job
    """Only the services of stacks the requester may list; how many were hidden."""
    stack = job.args.get("stack")
    if stack:
        tools.allow(job, stack)
    rows = tools.engine.service_rows(stack)
    allowed: dict[str, bool] = {}  # per stack: a listing has many services, few stacks
    for name in {r["stack"] for r in rows}:
        allowed[name] = tools.policy.may_touch(job.requester, job.command, name).allowed
    visible = [r for r in rows if allowed[r["stack"]]]
    unhealthy = sum(1 for r in visible if state_of(r) in TROUBLE)
    data = {
        "stack": stack,
        "fields": FIELDS,
        "rows": [[r[f] for f in FIELDS] for r in visible],
        "hidden": len(rows) - len(visible),
    }
    return Answer(True, data, f"{plural(len(visible), 'service')}, {unhealthy} unhealthy")


COMMAND = Command(
    name="services",
    summary="list services with running/desired replicas, image and last update",
    args=(stack_arg(optional=True),),
    examples=("!services", "!services dev"),
    stack_param="stack",
    read_only=True,
    handler=handle,
    render=render,
)
