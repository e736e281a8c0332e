"""``!locks``: the stacks locked now, by whom, why and since when."""

from __future__ import annotations

import time

from bot.core.alerting.ties import ago
from bot.core.replies import Reply, Table
from commands.base import Command, Context


async def answer(ctx: Context, args: dict[str, str]) -> Reply:
    locks = await ctx.queue.locks().all()
    if not locks:
        return Reply("no stack is locked")
    now = time.time()
    rows = tuple(
        (
            lock.stack,
            lock.holder,
            time.strftime("%m-%d %H:%M UTC", time.gmtime(lock.since)),
            ago(now - lock.since),
            lock.reason,
        )
        for lock in sorted(locks.values(), key=lambda lock: lock.since)
    )
    head = f"{len(rows)} lock{'s' if len(rows) != 1 else ''}"
    return Reply(head, Table(("STACK", "HELD BY", "SINCE", "FOR", "REASON"), rows))


COMMAND = Command(
    name="locks",
    summary="the stacks locked now: by whom, why, since when",
    examples=("!locks",),
    answer=answer,
    swarm_state=True,
)
