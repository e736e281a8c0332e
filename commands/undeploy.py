"""``!undeploy <stack>``: ``docker stack rm``; never volumes, and says which volumes stay."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.core.operations import Answer, JobFailed, JobRun, Notice, WorkerTools, who
from bot.core.replies import Reply, plural
from bot.core.wire import Job, Result
from commands.base import Command, error_reply, stack_arg


def render(result: Result) -> Reply:
    if not result.ok:
        return error_reply(result)
    data = result.data
    services = data["services"]
    lines = [f"services removed: {', '.join(services) or 'none'}"]
    if data["volumes"]:
        lines.append(f"volumes kept (the bot never deletes data): {', '.join(data['volumes'])}")
    return Reply(
        f"removed stack {data['stack']}: {plural(len(services), 'service')}",
        detail=tuple(lines),
        status="ok",
        job=result.job,
    )


def handle(tools: WorkerTools, run: JobRun) -> Answer:
    """``docker stack rm`` under the stack's lock, once, then until its services are gone;
    the volumes it created are named, and stay."""
    stack = run.args["stack"]
    tools.allow(run.job, stack)
    step = f"undeploy:{stack}"
    with tools.turns.stack_turn(stack, run), tools.turns.claim([stack], run):
        services = sorted(s["Spec"]["Name"] for s in tools.engine.services(stack))
        if not services and tools.turns.first_try(run, step):
            raise JobFailed(f"stack `{stack}` is not deployed")
        volumes = tools.engine.stack_volumes(stack)
        tools.turns.apply_once(run, step, lambda: tools.cli.remove_stack(stack))
        tools.turns.wait_until(
            lambda: not tools.engine.services(stack), f"services of {stack} still there"
        )
    data = {"stack": stack, "services": services, "volumes": volumes}
    summary = (
        f"{stack}: removed {plural(len(services), 'service')}, "
        f"kept {plural(len(volumes), 'volume')}"
    )
    return Answer(True, data, summary)


def notice(job: Job, data: Mapping[str, Any]) -> list[Notice]:
    if "stack" not in data:
        return []
    return [Notice(data["stack"], f"{data['stack']} removed {who(job)}")]


COMMAND = Command(
    name="undeploy",
    summary="remove a stack's services and networks (docker stack rm); its volumes are kept",
    args=(stack_arg(),),
    examples=("!undeploy dev",),
    stack_param="stack",
    locks_stack=True,
    handler=handle,
    confirm_text=lambda args: (
        f"this removes stack {args['stack']}: every service and network of it (its volumes "
        "are kept: the bot never deletes data)"
    ),
    notice=notice,
    render=render,
)
