"""``!undeploy <stack>``: ``docker stack rm``; never volumes, and says which volumes stay."""

from __future__ import annotations

from bot.core.replies import Reply
from bot.core.wire import Result
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
        f"removed stack {data['stack']}: {len(services)} services",
        detail=tuple(lines),
        status="ok",
        job=result.job,
    )


COMMAND = Command(
    name="undeploy",
    summary="remove a stack's services and networks (docker stack rm); its volumes are kept",
    args=(stack_arg(),),
    examples=("!undeploy dev",),
    stack_param="stack",
    locks_stack=True,
    job=lambda args: ("undeploy", {"stack": args["stack"]}),
    render=render,
)
