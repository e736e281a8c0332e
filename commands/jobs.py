"""``!jobs``: recent jobs and their state, from the job records in Redis.

What a user sees follows their roles: their own jobs, and others' on stacks one of their
roles covers (an admin: all). Who asked for what elsewhere is not theirs to read."""

from __future__ import annotations

import time

from bot.core.replies import Reply, Table, ago, plural
from bot.core.schedule import say
from commands.base import Command, Context

SHOWN = 15
READ = 200  # records read to find the SHOWN a limited role may see
BAD = {"failed", "refused", "expired"}


async def answer(ctx: Context, args: dict[str, str]) -> Reply:
    user, policy = ctx.message.user_id, ctx.policy
    everything = policy.is_admin(user) and not ctx.config.swarms
    records = [
        r
        for r in await ctx.queue.recent(SHOWN if everything else READ)
        if everything
        or r.get("requester") == user
        or policy.on(r.get("swarm", "")).may_see(user, r.get("stack", ""))
    ][:SHOWN]
    if not records:
        return Reply("no jobs yet")
    several = len(ctx.config.swarms) > 1
    table = Table(
        ("JOB", *(("SWARM",) if several else ()), "COMMAND", "BY", "STATE", "QUEUED", "RESULT"),
        tuple(
            (
                r.get("id", "?"),
                *((r.get("swarm", ""),) if several else ()),
                r.get("text", "")[:40],
                r.get("requester", ""),
                _state(r, ctx.config.timezone),
                ago(float(r.get("created", 0) or 0)),
                r.get("summary", "")[:60],
            )
            for r in records
        ),
        frozenset(i for i, r in enumerate(records) if r.get("state") in BAD),
    )
    return Reply(f"the last {plural(len(records), 'job')}:", table)


def _state(record: dict[str, str], zone: str) -> str:
    """The record's state; a scheduled job's says when it runs."""
    state = record.get("state", "")
    if state != "scheduled":
        return state
    try:
        at = float(record.get("not_before", "") or 0)
    except ValueError:
        return state
    return f"scheduled for {say(at, time.time(), zone)}" if at else state


COMMAND = Command(
    name="jobs",
    summary="list recent jobs and their state",
    examples=("!jobs",),
    answer=answer,
)
