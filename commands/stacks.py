"""``!stacks``: the stack files known, and which stacks are deployed."""

from __future__ import annotations

from bot.core.replies import Reply, Table
from bot.core.wire import Result
from commands.base import Command, error_reply


def render(result: Result) -> Reply:
    if not result.ok:
        return error_reply(result)
    rows = result.data["rows"]
    if not rows:
        return Reply("no stacks", status="ok", job=result.job)
    flagged = frozenset(
        i for i, r in enumerate(rows) if r["healthy"] < r["services"] or not r["file"]
    )
    table = Table(
        ("STACK", "FILE", "DEPLOYED", "SERVICES"),
        tuple(
            (
                r["name"],
                "yes" if r["file"] else "no file",
                "yes" if r["services"] else "no",
                f"{r['healthy']}/{r['services']} healthy" if r["services"] else "-",
            )
            for r in rows
        ),
        flagged,
    )
    return Reply(f"{len(rows)} stacks", table, status="ok", job=result.job)


COMMAND = Command(
    name="stacks",
    summary="list the stack files and which stacks are deployed",
    examples=("!stacks",),
    job=lambda args: ("stacks", {}),
    render=render,
)
