"""``!logs <service> [lines]``: a service's recent log lines, secrets scrubbed."""

from __future__ import annotations

import re

from bot.core.operations import Answer, JobRun, WorkerTools
from bot.core.replies import Reply, plural
from bot.core.wire import Result
from commands.base import Arg, Command, error_reply, service_arg


def render(result: Result) -> Reply:
    if "lines" not in result.data:
        return error_reply(result)
    lines = result.data["lines"]
    name = result.data["service"]
    if not lines:
        return Reply(f"{name} has written no log lines", status="ok", job=result.job)
    head = f"{name}, last {len(lines)} log lines (secrets masked as ***):"
    return Reply(head, detail=tuple(f"  {line}" for line in lines), status="ok", job=result.job)


DEFAULT_LINES = 30


def handle(tools: WorkerTools, run: JobRun) -> Answer:
    job = run.job
    service = tools.resolve(job)
    lines = int(job.args.get("lines") or DEFAULT_LINES)
    text = tools.log_tail(service.id, lines)
    name = service.name
    data = {"service": name, "lines": text, "asked": lines}
    return Answer(True, data, f"{name}: {plural(len(text), 'line')}")


COMMAND = Command(
    name="logs",
    summary="show a service's recent log lines (30 by default, at most 200); secrets are masked",
    args=(
        service_arg(),
        Arg(
            "lines",
            re.compile(r"^(?:[1-9][0-9]?|1[0-9][0-9]|200)$"),
            "a number from 1 to 200",
            optional=True,
        ),
    ),
    examples=("!logs gerrit", "!logs gerrit 100"),
    read_only=True,
    handler=handle,
    render=render,
)
