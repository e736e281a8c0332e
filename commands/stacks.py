"""``!stacks``: the stack files known, and which stacks are deployed."""

from __future__ import annotations

from bot.core.operations import Answer, Progress, WorkerTools
from bot.core.replies import Reply, Table, plural
from bot.core.wire import Job, Result
from commands.base import Command, error_reply
from commands.services import TROUBLE, state_of


def render(result: Result) -> Reply:
    if not result.ok:
        return error_reply(result)
    rows = result.data["rows"]
    if not rows:
        return Reply("no stacks", status="ok", job=result.job)
    flagged = frozenset(
        i for i, r in enumerate(rows) if r["healthy"] < r["services"] or not r["file"]
    )
    table = Table(
        ("STACK", "FILE", "DEPLOYED", "SERVICES"),
        tuple(
            (
                r["name"],
                "yes" if r["file"] else "no file",
                "yes" if r["services"] else "no",
                f"{r['healthy']}/{r['services']} healthy" if r["services"] else "-",
            )
            for r in rows
        ),
        flagged,
    )
    return Reply(plural(len(rows), "stack"), table, status="ok", job=result.job)


def handle(tools: WorkerTools, job: Job, progress: Progress) -> Answer:
    files = tools.stack_files()
    deployed: dict[str, list[dict]] = {}
    for row in tools.engine.service_rows():
        if row["stack"]:
            deployed.setdefault(row["stack"], []).append(row)
    rows = []
    for name in sorted(set(files) | set(deployed)):
        if not tools.policy.may_touch(job.requester, job.command, name).allowed:
            continue
        services = deployed.get(name, [])
        rows.append(
            {
                "name": name,
                "file": name in files,
                "services": len(services),
                "healthy": sum(1 for s in services if state_of(s) not in TROUBLE),
            }
        )
    return Answer(True, {"rows": rows}, plural(len(rows), "stack"))


COMMAND = Command(
    name="stacks",
    summary="list the stack files and which stacks are deployed",
    examples=("!stacks",),
    handler=handle,
    render=render,
)
