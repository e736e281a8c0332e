"""``!doctor``: what the worker stands on, one line per check with the fix when it fails:
the Docker daemon it reaches (node, manager or not, the swarm, and whether that is the
swarm served), Redis, IPVS for overlay virtual IPs, and the chat platforms from the
worker's network. ``swarmbot doctor`` in the bot's container checks the bot's side too
(its chat platform, the notices rooms joined). Changes nothing."""

from __future__ import annotations

from bot.core.doctor import Finding
from bot.core.operations import Answer, JobRun, WorkerTools
from bot.core.replies import Reply
from bot.core.wire import Result
from commands.base import Command, error_reply


def handle(tools: WorkerTools, run: JobRun) -> Answer:
    findings = tools.doctor()
    failed = [f.check for f in findings if not f.ok]
    data = {"findings": [f.as_data() for f in findings]}
    summary = "all checks pass" if not failed else f"failing: {', '.join(failed)}"
    return Answer(not failed, data, summary)


def render(result: Result) -> Reply:
    if "findings" not in result.data:
        return error_reply(result)
    findings = [Finding(**f) for f in result.data["findings"]]
    failed = sum(not f.ok for f in findings)
    head = (
        f"doctor: {len(findings)} checks on the worker, all pass"
        if not failed
        else f"doctor: {failed} of {len(findings)} checks on the worker fail"
    )
    lines = tuple(f.line() for f in findings)
    return Reply(head, detail=lines, status="ok" if not failed else "failed", job=result.job)


COMMAND = Command(
    name="doctor",
    summary="check what the worker stands on: its daemon, node and swarm, Redis, IPVS, the "
    "chat platforms from its network; one line each, with the fix",
    examples=("!doctor",),
    read_only=True,
    handler=handle,
    render=render,
)
