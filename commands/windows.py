"""``!windows``: the deploy windows from ``[windows]``, and whether each is open now or
when it next opens."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.core.replies import Reply, Table
from bot.core.schedule import say
from bot.core.windows import describe, is_open, next_open
from commands.base import Command, Context


async def answer(ctx: Context, args: dict[str, str]) -> Reply:
    config = ctx.config
    if not config.windows:
        return Reply("no deploy windows: changes may be made at any time ([windows] sets them)")
    now = time.time()
    at = datetime.fromtimestamp(now, ZoneInfo(config.timezone))
    rows = []
    for rule in config.windows:
        if is_open(rule.windows, at):
            state = "open now"
        else:
            state = f"opens {say(next_open(rule.windows, at).timestamp(), now, config.timezone)}"
        rows.append((rule.glob, describe(rule.windows), state))
    closed = frozenset(i for i, row in enumerate(rows) if row[2] != "open now")
    return Reply(
        f"deploy windows ({config.timezone}); stacks no rule matches may change at any time",
        Table(("STACKS", "WINDOWS", "NOW"), tuple(rows), closed),
    )


COMMAND = Command(
    name="windows",
    summary="the deploy windows per stack, and when each opens next",
    examples=("!windows",),
    answer=answer,
    swarm_state=True,
)
