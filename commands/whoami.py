"""``!whoami``: your stable ID and roles (open to everyone: it is how you get added)."""

from __future__ import annotations

from bot.core.replies import Reply
from commands.base import Command, Context


async def answer(ctx: Context, args: dict[str, str]) -> Reply:
    user = ctx.message.user_id
    roles = ctx.policy.roles_of(user)
    if not roles:
        return Reply(f"you are {user}, with no roles")
    lines = []
    for role in roles:
        commands = (
            "all commands"
            if "*" in role.commands
            else ", ".join(sorted(role.commands)) or "no commands"
        )
        stacks = ", ".join(role.stacks) or "no stacks"
        lines.append(f"{role.name}: {commands}; stacks {stacks}")
    return Reply(
        f"you are {user}, with roles: {', '.join(r.name for r in roles)}", detail=tuple(lines)
    )


COMMAND = Command(
    name="whoami",
    summary="show your user ID and your roles",
    examples=("!whoami",),
    answer=answer,
)
