"""``!help [command]``: the commands this user may run, usage generated from declarations."""

from __future__ import annotations

import re

from bot.core.replies import Reply, Table, code
from commands.base import Arg, Command, Context


async def answer(ctx: Context, args: dict[str, str]) -> Reply:
    prefix = ctx.config.prefix
    user = ctx.message.user_id
    name = args.get("command")
    if name:
        cmd = ctx.registry.get(name.lower().lstrip(prefix))
        if cmd is None:
            return Reply(f"no command {code(name)}; {prefix}help lists them", status="error")
        allowed = ctx.policy.may_run(user, cmd.name)
        lines = [f"usage: {cmd.usage(prefix)}", cmd.summary]
        if cmd.examples:
            lines.append("examples: " + ", ".join(cmd.examples))
        if cmd.stack_param:
            globs = ctx.policy.stacks_for(user, cmd.name)
            lines.append(f"your stacks: {', '.join(globs) if globs else 'none'}")
        if not allowed.allowed:
            lines.append(f"you may not run it: {allowed.reason}")
        return Reply(lines[0], detail=tuple(lines[1:]))
    mine = [c for c in ctx.registry.values() if ctx.policy.may_run(user, c.name).allowed]
    table = Table(("COMMAND", "WHAT IT DOES"), tuple((c.usage(prefix), c.summary) for c in mine))
    head = f"commands you may run ({prefix}help <command> for details):"
    if not ctx.policy.roles_of(user):
        head = f"you ({user}) have no role yet; ask an admin to add your ID. You may run:"
    return Reply(head, table)


COMMAND = Command(
    name="help",
    summary="list the commands you may run, or show one command's usage",
    args=(Arg("command", re.compile(r"^[!./]?[a-z]{1,20}$"), "a command name", optional=True),),
    examples=("!help", "!help deploy"),
    answer=answer,
)
