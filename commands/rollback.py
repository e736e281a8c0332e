"""``!rollback <service>``: back to the service's previous spec, with the same outcome
reporting as a deploy (asks for confirmation by default: it undoes someone's change)."""

from __future__ import annotations

from bot.core.operations import Answer, JobFailed, Progress, WorkerTools
from bot.core.wire import Job
from commands.base import Command, service_arg
from commands.outcomes import progress_line
from commands.restart import change_notice, change_renderer


def handle(tools: WorkerTools, job: Job, progress: Progress) -> Answer:
    service = tools.resolve(job)
    if not service.get("PreviousSpec"):
        raise JobFailed(f"{service['Spec']['Name']} has no previous spec to roll back to")
    return tools.change_service(
        job, service, progress, lambda: tools.rollback_service(service["ID"]), rollback=True
    )


COMMAND = Command(
    name="rollback",
    summary="return a service to its previous spec (docker service rollback) and wait until it "
    "has converged",
    args=(service_arg(),),
    examples=("!rollback gerrit",),
    handler=handle,
    render=change_renderer("rolled back", "rollback"),
    render_progress=progress_line,
    confirm_text=lambda args: (
        f"this returns {args['service']} to its previous spec (docker service rollback) and "
        "restarts its tasks"
    ),
    notice=change_notice("rolled back"),
)
