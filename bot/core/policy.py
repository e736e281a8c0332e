"""Who may do what. Deny by default: no role, no command; no matching stack glob, no stack.

Users are matched only by their stable platform ID (``console:alice``,
``@alice:example.org``, ``slack:U123``). Display names never reach this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.core.config import Role
from bot.core.ids import matches_any

# Commands anyone may run: they grant nothing by themselves. help and whoami reveal nothing
# about the swarm (and are how an unknown user learns the ID to give an admin); confirm
# checks the requester or the approver's rights on the original command; cancel touches
# only the user's own jobs (an admin's, all commands on all stacks: anyone's).
OPEN_COMMANDS = frozenset({"whoami", "help", "confirm", "cancel"})


RefusalKind = Literal["", "no-role", "command", "stack", "swarm"]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""  # for the user, in chat
    kind: RefusalKind = ""  # for metrics: why, as a fixed label


class Policy:
    def __init__(self, roles: tuple[Role, ...]) -> None:
        self._roles = roles

    def on(self, swarm: str) -> Policy:
        """The policy on ``swarm``: only the roles that hold there (``swarms`` in a role);
        every role for "" (a bot of one swarm)."""
        if not swarm:
            return self
        return Policy(tuple(r for r in self._roles if r.covers(swarm)))

    def may_use_swarm(self, user_id: str, swarm: str) -> Decision:
        """A user whose roles all hold on other swarms is refused on ``swarm``, by name."""
        roles = self.roles_of(user_id)
        if not swarm or not roles or self.on(swarm).roles_of(user_id):
            return Decision(True)
        names = ", ".join(r.name for r in roles)
        return Decision(False, f"your roles ({names}) do not hold on swarm `{swarm}`", "swarm")

    def roles_of(self, user_id: str) -> tuple[Role, ...]:
        return tuple(r for r in self._roles if user_id in r.users)

    def commands_for(self, user_id: str) -> frozenset[str] | None:
        """The command names a user may run; ``None`` means all ("*")."""
        names: set[str] = set()
        for role in self.roles_of(user_id):
            if "*" in role.commands:
                return None
            names |= role.commands
        return frozenset(names)

    def stacks_for(self, user_id: str, command: str) -> tuple[str, ...]:
        """The stack globs under which ``user_id`` may run ``command``."""
        globs: list[str] = []
        for role in self.roles_of(user_id):
            if "*" in role.commands or command in role.commands:
                globs.extend(role.stacks)
        return tuple(globs)

    def may_approve(self, user_id: str, stack: str) -> bool:
        """May ``user_id`` be the second approver of a change to ``stack``? When some role
        names the stack in ``approves``, only members of such a role; else anyone allowed
        to run the command (checked by the caller)."""
        named = [r for r in self._roles if matches_any(stack, r.approves)]
        return not named or any(user_id in r.users for r in named)

    def is_admin(self, user_id: str) -> bool:
        """All commands on all stacks (``commands = ["*"]`` and ``stacks = ["*"]`` in one
        role). A role with every command but only some stacks is not an admin: it may not
        cancel, or read about, what happens on the other stacks."""
        return any("*" in r.commands and "*" in r.stacks for r in self.roles_of(user_id))

    def may_see(self, user_id: str, stack: str) -> bool:
        """May ``user_id`` see others' work on ``stack`` (jobs, audit entries, names in a
        refusal)? When one of their roles covers the stack, for any command. Work on no
        known stack is seen by admins only (and by whoever asked for it: the callers
        check that)."""
        if self.is_admin(user_id):
            return True
        return bool(stack) and any(matches_any(stack, r.stacks) for r in self.roles_of(user_id))

    def may_run(self, user_id: str, command: str) -> Decision:
        if command in OPEN_COMMANDS:
            return Decision(True)
        roles = self.roles_of(user_id)
        if not roles:
            return Decision(
                False, f"you ({user_id}) have no role here; ask an admin to add you", "no-role"
            )
        allowed = self.commands_for(user_id)
        if allowed is not None and command not in allowed:
            names = ", ".join(r.name for r in roles)
            return Decision(
                False, f"your roles ({names}) do not include the command `{command}`", "command"
            )
        return Decision(True)

    def may_touch_all(self, user_id: str, command: str) -> Decision:
        """``!deploy all`` and the like: only a role whose stacks are ``*`` may.

        The bot cannot know every stack file without asking the worker, and "all but the
        ones you may not touch" would be a surprising meaning of "all".
        """
        if "*" in self.stacks_for(user_id, command):
            return Decision(True)
        return Decision(
            False, f'`{command} all` needs a role over all stacks (stacks = ["*"])', "stack"
        )

    def may_touch(self, user_id: str, command: str, stack: str) -> Decision:
        """May ``user_id`` run ``command`` on ``stack``? Checked after ``may_run``."""
        if matches_any(stack, self.stacks_for(user_id, command)):
            return Decision(True)
        label = f"stack `{stack}`" if stack else "services outside any stack"
        return Decision(False, f"your roles do not allow `{command}` on {label}", "stack")
