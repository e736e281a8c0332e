"""``!confirm <code>``: go ahead with a dangerous command (or approve someone else's)."""

from __future__ import annotations

import re

from bot.core.replies import Reply
from commands.base import Arg, Command, Context


async def answer(ctx: Context, args: dict[str, str]) -> Reply:
    return await ctx.dispatcher.confirm(ctx.message, args["code"])


COMMAND = Command(
    name="confirm",
    summary="confirm a dangerous command with the code it gave you, or approve someone else's",
    args=(Arg("code", re.compile(r"^[A-Za-z0-9]{4}$"), "a 4-character confirmation code"),),
    examples=("!confirm K7Q2",),
    answer=answer,
)
