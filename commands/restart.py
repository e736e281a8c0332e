"""``!restart <service>``: ``docker service update --force``, then wait for convergence."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bot.core.operations import (
    Answer,
    JobRun,
    Notice,
    NoticeFor,
    ServiceChange,
    WorkerTools,
    who,
)
from bot.core.replies import Reply
from bot.core.wire import Job, Result
from commands.base import Command, error_reply, service_arg
from commands.outcomes import STATE_WORDS, log_lines, outcome_table, progress_line


def change_renderer(done: str, noun: str) -> Callable[[Result], Reply]:
    """How a one-service change reads: ``restarted x: 2/2 running (5.1s)`` or why not."""

    def render(result: Result) -> Reply:
        if "outcome" not in result.data:
            return error_reply(result)
        outcome = result.data["outcome"]
        name = result.data["service"]
        if result.ok:
            replicas = f"{outcome['running']}/{outcome['desired']}"
            head = f"{done} {name}: {replicas} running ({outcome['seconds']:.1f}s)"
            return Reply(head, status="ok", job=result.job)
        state = STATE_WORDS.get(outcome["state"], outcome["state"])
        head = f"{noun} of {name} {state}: {outcome['reason']}"
        table = outcome_table([outcome])
        return Reply(head, table, log_lines([outcome]), status="failed", job=result.job)

    return render


def change_notice(verb: str) -> NoticeFor:
    """How a one-service change is told in the notices rooms (restart, rollback)."""

    def notice(job: Job, data: Mapping[str, Any]) -> list[Notice]:
        if "service" not in data:
            return []
        outcome = data.get("outcome") or {}
        ok = outcome.get("state") == "converged"
        result = (
            f"converged in {outcome.get('seconds', 0):.1f}s"
            if ok
            else f"FAILED: {outcome.get('reason', data.get('error', '?'))}"
        )
        text = f"{data['service']} {verb} {who(job)}: {result}"
        return [Notice(data.get("stack", ""), text, (), "info" if ok else "failed")]

    return notice


def handle(tools: WorkerTools, run: JobRun) -> Answer:
    return tools.change_service(run, tools.resolve(run.job), ServiceChange.restart())


COMMAND = Command(
    schedulable=True,
    name="restart",
    summary="restart a service's tasks (docker service update --force) and wait until it "
    "has converged",
    args=(service_arg(),),
    examples=("!restart gerrit", "!restart gerrit in 90s"),
    handler=handle,
    confirm_text=lambda args: f"this restarts every task of {args['service']}",
    notice=change_notice("restarted"),
    render=change_renderer("restarted", "restart"),
    render_progress=progress_line,
)
