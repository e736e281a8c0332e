"""``!services [stack]``: every service with running/desired replicas; unhealthy ones flagged."""

from __future__ import annotations

from bot.core.operations import Answer, Progress, WorkerTools
from bot.core.replies import Reply, Table, ago, plural
from bot.core.wire import Job, Result
from commands.base import Command, error_reply, stack_arg


def render(result: Result) -> Reply:
    if not result.ok:
        return error_reply(result)
    data = result.data
    rows = data["rows"]
    where = f" in stack {data['stack']}" if data.get("stack") else ""
    if not rows:
        return Reply(f"no services{where}", status="ok", job=result.job)
    flagged = frozenset(i for i, r in enumerate(rows) if r["running"] < r["desired"])
    table = Table(
        ("SERVICE", "MODE", "REPLICAS", "IMAGE", "UPDATED"),
        tuple(
            (r["name"], r["mode"], f"{r['running']}/{r['desired']}", r["image"], ago(r["updated"]))
            for r in rows
        ),
        flagged,
    )
    head = f"{plural(len(rows), 'service')}{where}"
    head += f", {len(flagged)} unhealthy" if flagged else ", all healthy"
    detail = (f"({data['hidden']} more in stacks you may not see)",) if data.get("hidden") else ()
    return Reply(head, table, detail, status="failed" if flagged else "ok", job=result.job)


def handle(tools: WorkerTools, job: Job, progress: Progress) -> Answer:
    """Only the services of stacks the requester may list; how many were hidden."""
    stack = job.args.get("stack")
    if stack:
        tools.allow(job, stack)
    rows = tools.engine.service_rows(stack)
    visible = [
        r for r in rows if tools.policy.may_touch(job.requester, job.command, r["stack"]).allowed
    ]
    unhealthy = sum(1 for r in visible if r["running"] < r["desired"])
    data = {"stack": stack, "rows": visible, "hidden": len(rows) - len(visible)}
    return Answer(True, data, f"{plural(len(visible), 'service')}, {unhealthy} unhealthy")


COMMAND = Command(
    name="services",
    summary="list services with running/desired replicas, image and last update",
    args=(stack_arg(optional=True),),
    examples=("!services", "!services dev"),
    stack_param="stack",
    handler=handle,
    render=render,
)
