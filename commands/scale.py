"""``!scale <service> <replicas>``: ``docker service scale``, then wait for convergence."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bot.core.operations import Answer, JobFailed, JobRun, Notice, ServiceChange, WorkerTools
from bot.core.wire import Job
from commands.base import Arg, Command, service_arg
from commands.outcomes import progress_line
from commands.restart import change_notice, change_renderer

MAX_REPLICAS = 100


def handle(tools: WorkerTools, run: JobRun) -> Answer:
    service = tools.resolve(run.job)
    if service.is_global:
        raise JobFailed(
            f"{service.name} is a global service (one task per node); it cannot be scaled"
        )
    replicas = int(run.args["replicas"])
    change = ServiceChange.update(mode={"Replicated": {"Replicas": replicas}})
    return tools.change_service(run, service, change)


def notice(job: Job, data: Mapping[str, Any]) -> list[Notice]:
    return change_notice(f"scaled to {job.args['replicas']}")(job, data)


COMMAND = Command(
    name="scale",
    summary="set a replicated service's number of tasks (docker service scale) and wait "
    "until it has converged",
    args=(
        service_arg(),
        Arg(
            "replicas",
            re.compile(rf"^(?:0|[1-9][0-9]?|{MAX_REPLICAS})$"),
            f"a number of replicas from 0 to {MAX_REPLICAS}",
        ),
    ),
    examples=("!scale gerrit 2", "!scale dev_trac 0"),
    handler=handle,
    render=change_renderer("scaled", "scale"),
    render_progress=progress_line,
    confirm_text=lambda args: f"this scales {args['service']} to {args['replicas']} tasks",
    notice=notice,
)
