"""Who may do what: [roles], [variables] and [safety]."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from bot.core.config.defaults import ROLE_KEYS
from bot.core.config.model import Problems, Role
from bot.core.config.names import USER_ID, VARIABLE_NAME


def variables(table: Any, problems: Problems, section: str = "variables") -> dict[str, str]:
    if not isinstance(table, dict):
        problems.append((section, 'must be a table of NAME = "value"'))
        return {}
    out: dict[str, str] = {}
    for name, value in table.items():
        if not VARIABLE_NAME.match(name):
            problems.append((f"{section}.{name}", "names are upper case: letters, digits and '_'"))
        elif not isinstance(value, str):
            problems.append((f"{section}.{name}", "must be a string"))
        else:
            out[name] = value
    return out


def roles(table: Any, problems: Problems, commands: Collection[str]) -> tuple[Role, ...]:
    if not isinstance(table, dict):
        problems.append(("roles", "must be a table of roles"))
        return ()
    roles: list[Role] = []
    for name, spec in table.items():
        key = f"roles.{name}"
        if not isinstance(spec, dict):
            problems.append((key, "must be a table with users, commands and stacks"))
            continue
        for extra in set(spec) - ROLE_KEYS:
            problems.append(
                (f"{key}.{extra}", f"unknown key (known: {', '.join(sorted(ROLE_KEYS))})")
            )
        lists: dict[str, list[str]] = {}
        for part in sorted(ROLE_KEYS):
            value = spec.get(part, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problems.append((f"{key}.{part}", "must be a list of strings"))
                value = []
            lists[part] = value
        _check_lists(key, lists, problems, commands)
        roles.append(
            Role(
                name=name,
                users=frozenset(lists["users"]),
                commands=frozenset(lists["commands"]),
                stacks=tuple(lists["stacks"]),
                approves=tuple(lists["approves"]),
                swarms=tuple(lists["swarms"]),
            )
        )
    return tuple(roles)


def _check_lists(
    key: str, lists: dict[str, list[str]], problems: Problems, commands: Collection[str]
) -> None:
    """A role's users are stable IDs, its commands exist, its stacks are globs."""
    for i, user in enumerate(lists["users"]):
        if not USER_ID.match(user):
            problems.append(
                (
                    f"{key}.users[{i}]",
                    f"{user!r} is not a stable user ID "
                    "(console:NAME, @user:server for Matrix, slack:U… for Slack)",
                )
            )
    for i, command in enumerate(lists["commands"]):
        if command != "*" and command not in commands:
            problems.append((f"{key}.commands[{i}]", f"unknown command {command!r}"))
    for part in ("stacks", "approves"):
        for i, glob in enumerate(lists[part]):
            if not re.match(r"^[a-z0-9*?\[\]_-]{1,64}$", glob):
                problems.append((f"{key}.{part}[{i}]", f"{glob!r} is not a stack name or glob"))


def check_role_swarms(roles: tuple[Role, ...], names: tuple[str, ...], problems: Problems) -> None:
    """A role limited to swarms names swarms of [swarms]."""
    for role in roles:
        for i, name in enumerate(role.swarms):
            if name not in names:
                known = ", ".join(names) or "none: the config has no [swarms]"
                problems.append(
                    (f"roles.{role.name}.swarms[{i}]", f"unknown swarm {name!r} (known: {known})")
                )


def check_safety(safety: dict[str, Any], problems: Problems, commands: Collection[str]) -> None:
    for i, name in enumerate(safety["confirm"]):
        if name not in ("deploy all", "deploy --prune") and name not in commands:
            problems.append(
                (
                    f"safety.confirm[{i}]",
                    f'unknown command {name!r} (or "deploy all", "deploy --prune")',
                )
            )
    for i, glob in enumerate(safety["second_approver_stacks"]):
        if not isinstance(glob, str) or not re.match(r"^[a-z0-9*?\[\]_-]{1,64}$", glob):
            problems.append(
                (f"safety.second_approver_stacks[{i}]", f"{glob!r} is not a stack name or glob")
            )
    if not 10 <= safety["confirm_seconds"] <= 3600:
        problems.append(("safety.confirm_seconds", "must be between 10 and 3600"))
    if not 1 <= safety["rate_limit_per_minute"] <= 10_000:
        problems.append(("safety.rate_limit_per_minute", "must be between 1 and 10000"))
