"""``!check <stack>``: what is wrong with a stack file before it is deployed (also run by
every ``!deploy``, which stops on an error)."""

from __future__ import annotations

from typing import Any

from bot.core.operations import Answer, JobRun, WorkerTools
from bot.core.replies import Reply, Table, plural
from bot.core.wire import Result
from commands.base import REF_ARG, Command, error_reply, stack_arg


def problem_table(problems: list[dict[str, Any]]) -> Table:
    return Table(
        ("SERVICE", "KEY", "PROBLEM", "LEVEL"),
        tuple(
            (
                p["service"] or "-",
                p["key"],
                p["message"][:160],
                "error" if p["error"] else "warning",
            )
            for p in problems
        ),
        frozenset(i for i, p in enumerate(problems) if p["error"]),
    )


def render(result: Result) -> Reply:
    data = result.data
    if "problems" not in data:
        return error_reply(result)
    problems = data["problems"]
    notes = tuple(n for n in [data.get("note", "")] if n)
    at = f" at {data['at']}" if data.get("at") else ""
    if not problems:
        return Reply(
            f"{data['stack']}{at}: no problems found", detail=notes, status="ok", job=result.job
        )
    errors = sum(1 for p in problems if p["error"])
    head = (
        f"{data['stack']}{at}: {plural(errors, 'error')}, "
        f"{plural(len(problems) - errors, 'warning')}"
    )
    return Reply(
        head, problem_table(problems), notes, status="failed" if errors else "ok", job=result.job
    )


def handle(tools: WorkerTools, run: JobRun) -> Answer:
    job = run.job
    stack = job.args["stack"]
    tools.allow(job, stack)
    source = tools.files.source(job.args.get(REF_ARG))
    _rendered, problems, note = tools.files.preflight(stack, source, job.requester)
    errors = sum(bool(p["error"]) for p in problems)
    data = {"stack": stack, "problems": problems, "note": note, "at": source.names()}
    return Answer(
        errors == 0,
        data,
        f"{stack}: {plural(errors, 'error')}, {plural(len(problems) - errors, 'warning')}",
    )


COMMAND = Command(
    name="check",
    summary="check a stack file: unset variables, missing external networks, secrets, configs "
    "and volumes, missing bind paths, impossible constraints, untagged images, ignored keys",
    args=(stack_arg(at_ref=True),),
    examples=("!check dev",),
    stack_param="stack",
    read_only=True,
    handler=handle,
    render=render,
)
