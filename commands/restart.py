"""``!restart <service>``: ``docker service update --force``, then wait for convergence."""

from __future__ import annotations

from bot.chat import Reply
from bot.jobs import Result
from commands.base import Command, error_reply, service_arg
from commands.outcomes import STATE_WORDS, outcome_table, progress_line


def render(result: Result) -> Reply:
    if "outcome" not in result.data:
        return error_reply(result)
    outcome = result.data["outcome"]
    name = result.data["service"]
    if result.ok:
        replicas = f"{outcome['running']}/{outcome['desired']}"
        head = f"restarted {name}: {replicas} running ({outcome['seconds']:.1f}s)"
        return Reply(head, status="ok", job=result.job)
    state = STATE_WORDS.get(outcome["state"], outcome["state"])
    head = f"restart of {name} {state}: {outcome['reason']}"
    return Reply(head, outcome_table([outcome]), status="failed", job=result.job)


COMMAND = Command(
    name="restart",
    summary="restart a service's tasks (docker service update --force) and wait until it "
    "has converged",
    args=(service_arg(),),
    examples=("!restart gerrit",),
    job=lambda args: ("restart", {"service": args["service"]}),
    render=render,
    render_progress=progress_line,
)
