"""``!rm <service>``: ``docker service rm``, after a confirmation. The volumes the service
used stay, and the answer names them: removing a volume destroys data, which the bot never
does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.core.operations import Answer, JobRun, Notice, WorkerTools, who
from bot.core.replies import Reply, plural
from bot.core.wire import Job, Result
from commands.base import Command, error_reply, service_arg


def render(result: Result) -> Reply:
    data = result.data
    if "volumes" not in data:
        return error_reply(result)
    kept = ", ".join(data["volumes"]) or "none"
    return Reply(
        f"removed {data['service']}",
        detail=(f"volumes kept (the bot never deletes data): {kept}",),
        status="ok",
        job=result.job,
    )


def handle(tools: WorkerTools, run: JobRun) -> Answer:
    """``docker service rm`` under the stack's lock, once, then until swarm has let it go;
    the answer names the volumes it used, which stay."""
    service = tools.resolve(run.job)
    name, stack = service.name, service.stack
    with tools.turns.stack_turn(stack or name, run), tools.turns.claim([name], run):
        tools.turns.apply_once(run, f"rm:{name}", lambda: tools.cli.remove_service(service.id))
        tools.turns.wait_until(
            lambda: all(s["Spec"]["Name"] != name for s in tools.engine.services(stack or None)),
            f"{name} still there",
        )
    data = {"service": name, "stack": stack, "volumes": service.volumes}
    return Answer(True, data, f"{name} removed, {plural(len(service.volumes), 'volume')} kept")


def notice(job: Job, data: Mapping[str, Any]) -> list[Notice]:
    if "volumes" not in data:
        return []
    return [Notice(data.get("stack", ""), f"{data['service']} removed {who(job)}")]


COMMAND = Command(
    name="rm",
    summary="remove a service (docker service rm) after a confirmation; its volumes are kept",
    args=(service_arg(),),
    examples=("!rm dev_oldtool",),
    handler=handle,
    render=render,
    notice=notice,
    confirm_text=lambda args: (
        f"this removes service {args['service']} and its tasks (its volumes are kept)"
    ),
)
