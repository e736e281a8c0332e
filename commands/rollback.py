"""``!rollback <service|stack>``: a service back to its previous spec, or (stacks from git)
a stack back to the commit deployed before the one it runs, with the same outcome
reporting as a deploy (asks for confirmation by default: it undoes someone's change)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from bot.core.ids import PREVIOUS_COMMIT_LABEL, SERVICE_NAME, STACK_NAME
from bot.core.operations import Answer, JobFailed, JobRun, Notice, ServiceChange, WorkerTools
from bot.core.replies import Reply
from bot.core.services import ServiceView
from bot.core.wire import Job, Result
from commands import deploy
from commands.base import Arg, Command
from commands.outcomes import progress_line
from commands.restart import change_notice, change_renderer

_service_render = change_renderer("rolled back", "rollback")
_service_notice = change_notice("rolled back")


def handle(tools: WorkerTools, run: JobRun) -> Answer:
    typed = run.args["service"]
    services = tools.engine.services(typed) if STACK_NAME.match(typed) else []
    if services and not any(s["Spec"]["Name"] == typed for s in services):
        return _rollback_stack(tools, run, typed, services)
    service = tools.resolve(run.job)
    if not service.has_previous:
        raise JobFailed(f"{service.name} has no previous spec to roll back to")
    answer = tools.change_service(run, service, ServiceChange.rollback())
    return replace(answer, data={**answer.data, "volumes": service.volumes})


def _rollback_stack(
    tools: WorkerTools, run: JobRun, stack: str, services: list[dict[str, Any]]
) -> Answer:
    """Deploy the commit the stack's services name as the one before theirs."""
    tools.allow(run.job, stack)
    previous = {
        (s["Spec"].get("Labels") or {}).get(PREVIOUS_COMMIT_LABEL, "") for s in services
    } - {""}
    if not previous:
        raise JobFailed(
            f"{stack} has no previous commit to go back to (it was deployed once from git, or "
            f"not from git); !rollback <service> returns one service to its previous spec"
        )
    source = tools.files.source(sorted(previous)[0])
    report = tools.deploy_stack(stack, run, source=source)
    volumes = sorted({v for s in services for v in ServiceView.of(s).volumes})
    data = {**report, "rollback": True, "volumes": volumes}
    return Answer(report["ok"], data, f"{stack}: rolled back: " + deploy.summary(report))


def render(result: Result) -> Reply:
    if not result.data.get("rollback"):
        return _kept(_service_render(result), result)
    reply = deploy.render(result)
    return _kept(replace(reply, text=reply.text.replace("deployed ", "rolled back ", 1)), result)


def _kept(reply: Reply, result: Result) -> Reply:
    """A rollback removes no volume: the answer names the ones it left as they were."""
    volumes = result.data.get("volumes") or []
    if not volumes or not result.ok:
        return reply
    line = f"volumes kept as they are (the bot never deletes data): {', '.join(volumes)}"
    return replace(reply, detail=(*reply.detail, line))


def notice(job: Job, data: Mapping[str, Any]) -> list[Notice]:
    if not data.get("rollback"):
        return _service_notice(job, data)
    return [
        replace(n, text=n.text.replace(" deployed at ", " rolled back to ", 1))
        for n in deploy.notice(job, data)
    ]


COMMAND = Command(
    name="rollback",
    summary="return a service to its previous spec (docker service rollback), or a stack "
    "deployed from git to the commit it ran before, and wait until it has converged",
    args=(Arg("service", SERVICE_NAME, "a service or stack name", shown="service|stack"),),
    examples=("!rollback gerrit", "!rollback dev"),
    handler=handle,
    render=render,
    render_progress=progress_line,
    confirm_text=lambda args: (
        f"this returns {args['service']} to its previous spec (docker service rollback; a "
        "stack deployed from git: the commit it ran before) and restarts its tasks"
    ),
    notice=notice,
)
