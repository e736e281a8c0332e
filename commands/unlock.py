"""``!unlock <stack|all> [--break]``: lift your lock; an admin breaks someone else's with
``--break`` (always confirmed, told in the notices rooms so the holder hears of it).
Changes from git or the registry that waited for the lock are looked at again at once."""

from __future__ import annotations

import re

from bot.core.config import Config
from bot.core.locks import ALL
from bot.core.policy import Policy
from bot.core.replies import Reply
from commands.base import Arg, Command, Context, stack_arg


async def answer(ctx: Context, args: dict[str, str]) -> Reply:
    stack, user = args["stack"], ctx.message.user_id
    store = ctx.queue.locks()
    held = (await store.all()).get(stack)
    what = "every stack" if stack == ALL else stack
    if held is None:
        return Reply(f"{what} is not locked", status="error")
    breaking = args.get("option") == "--break"
    if held.holder != user and not breaking:
        return Reply(
            f"{what} is locked by {held.holder} ({held.reason}); they unlock it, or an admin "
            f"breaks the lock: {ctx.config.prefix}unlock {stack} --break",
            status="error",
        )
    if held.holder != user and not ctx.policy.on(ctx.config.swarm).is_admin(user):
        return Reply(f"only an admin may break {held.holder}'s lock on {what}", status="refused")
    await store.drop(stack)
    where = stack if stack != ALL else ""
    if held.holder == user:
        await ctx.queue.tell(where, f"{what} unlocked by {user}")
        text = f"{what} unlocked"
    else:
        await ctx.queue.tell(
            where, f"{held.holder}: your lock on {what} ({held.reason}) was broken by {user}"
        )
        text = f"{held.holder}'s lock on {what} broken; told in the notices rooms"
    await ctx.queue.poke_watcher("unlocked")
    return Reply(text, status="ok")


def _breaking(config: Config, args: dict[str, str], user: str) -> bool:
    """Breaking a lock is confirmed; asked only of an admin (anyone else is refused)."""
    return args.get("option") == "--break" and Policy(config.roles).is_admin(user)


COMMAND = Command(
    name="unlock",
    summary="lift your lock on a stack (or all); `--break`: an admin lifts someone else's "
    "(always confirmed)",
    args=(
        stack_arg(allow_all=True),
        Arg("option", re.compile(r"^--break$"), "--break", optional=True, shown="--break"),
    ),
    examples=("!unlock dev", "!unlock dev --break"),
    stack_param="stack",
    answer=answer,
    swarm_state=True,
    always_confirm=_breaking,
    confirm_text=lambda args: f"this breaks the lock on {args.get('stack', '?')}",
)
