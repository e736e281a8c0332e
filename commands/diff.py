"""``!diff <stack>``: what a deploy would change, per service. Changes nothing; never shows
environment values, only which keys change."""

from __future__ import annotations

from bot.core.operations import Answer, JobRun, WorkerTools
from bot.core.replies import Reply, Table, plural
from bot.core.wire import Result
from commands.base import REF_ARG, Command, error_reply, stack_arg


def render(result: Result) -> Reply:
    data = result.data
    if "changes" not in data:
        return error_reply(result)
    changes = data["changes"]
    at = f" at {data['at']}" if data.get("at") else ""
    if not changes:
        return Reply(
            f"{data['stack']}{at}: the file matches what runs; a deploy would change nothing",
            status="ok",
            job=result.job,
        )
    table = Table(
        ("SERVICE", "CHANGE", "RESTARTS TASKS", "WHAT"),
        tuple(
            (
                c["service"],
                c["change"],
                "yes" if c["restarts"] else "no",
                "; ".join(c["details"])[:200],
            )
            for c in changes
        ),
        frozenset(i for i, c in enumerate(changes) if c["restarts"]),
    )
    return Reply(
        f"{data['stack']}{at}: a deploy would change {plural(len(changes), 'service')}",
        table,
        status="ok",
        job=result.job,
    )


def handle(tools: WorkerTools, run: JobRun) -> Answer:
    job = run.job
    stack = job.args["stack"]
    tools.allow(job, stack)
    source = tools.files.source(job.args.get(REF_ARG))
    rendered = tools.files.render(stack, source, job.requester)
    changes = tools.files.diff(stack, rendered)
    return Answer(
        True,
        {"stack": stack, "changes": changes, "at": source.names()},
        f"{stack}: {plural(len(changes), 'service')} would change",
    )


COMMAND = Command(
    name="diff",
    summary="show what a deploy of a stack would change, per service (changes nothing)",
    args=(stack_arg(at_ref=True),),
    examples=("!diff dev",),
    stack_param="stack",
    read_only=True,
    handler=handle,
    render=render,
)
