"""``!cancel <job>``: cancel a job that has not started (your own; admins: anyone's)."""

from __future__ import annotations

import re

from bot.core.replies import Reply
from commands.base import Arg, Command, Context


async def answer(ctx: Context, args: dict[str, str]) -> Reply:
    job_id, user = args["job"], ctx.message.user_id
    record = await ctx.queue.record(job_id)
    # All commands on all stacks (of the job's swarm), not just all commands.
    is_admin = ctx.policy.on(record.get("swarm", "")).is_admin(user)
    if not record or (record.get("requester") != user and not is_admin):
        # The same answer for a job that does not exist and one that is someone else's:
        # who asked for what is not for those who cannot act on it.
        return Reply(f"no job {job_id} that you can cancel", status="error")
    state = await ctx.queue.cancel(job_id, user)
    if state == "now-cancelled":
        return Reply(
            f"cancelled job {job_id} ({record.get('text')}); it will not run", status="ok"
        )
    if state == "running":
        return Reply(f"job {job_id} is already running; it cannot be cancelled", status="error")
    return Reply(f"job {job_id} has already finished ({state})", status="error")


COMMAND = Command(
    name="cancel",
    summary="cancel a queued job that has not started yet (your own; admins: anyone's)",
    args=(Arg("job", re.compile(r"^[0-9]{1,18}$"), "a job number"),),
    examples=("!cancel 42",),
    answer=answer,
)
