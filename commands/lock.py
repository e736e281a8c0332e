"""``!lock <stack|all> <reason>``: nobody else changes the stack until it is unlocked —
"don't deploy dev, I'm migrating the database". Deploys, restarts, scales, rollbacks,
removals and changes from git or the registry are refused with who locked it, why and since
when (the worker checks before every change); proposals from git and the registry wait and
are told again when the lock goes. Survives restarts (Redis, sealed), audited, told in the
notices rooms."""

from __future__ import annotations

import re
import time

from bot.core.locks import ALL, Lock
from bot.core.replies import Reply
from commands.base import Arg, Command, Context, stack_arg

REASON = re.compile(r"^\S.{0,199}$")


async def answer(ctx: Context, args: dict[str, str]) -> Reply:
    stack, user = args["stack"], ctx.message.user_id
    store = ctx.queue.locks()
    held = (await store.all()).get(stack)
    if held is not None and held.holder != user:
        return Reply(
            f"{'everything' if stack == ALL else stack} is locked already by {held.holder}: "
            f"{held.reason}",
            status="error",
        )
    lock = Lock(stack, user, args["reason"], held.since if held else time.time())
    await store.put(lock)
    what = "every stack" if stack == ALL else stack
    told = await ctx.queue.tell(
        stack if stack != ALL else "", f"{what} locked by {user}: {lock.reason}"
    )
    rooms = f"; told in {told} room{'s' if told != 1 else ''}" if told else ""
    return Reply(
        f"{what} locked: changes by anyone else are refused until "
        f"{ctx.config.prefix}unlock {stack}{rooms}",
        status="ok",
    )


COMMAND = Command(
    name="lock",
    summary="lock a stack (or all): changes by anyone else are refused, and changes from "
    "git or the registry wait, until you unlock it",
    args=(stack_arg(allow_all=True), Arg("reason", REASON, "a reason", rest=True)),
    examples=("!lock dev migrating the database",),
    stack_param="stack",
    answer=answer,
    swarm_state=True,
)
